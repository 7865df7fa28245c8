"""``runyard run --follow``: the run's event stream, rendered live in the terminal.

Message text appears as it streams; each tool call is folded to one line with its
result's first line; a status line shows status, turns, tokens, cost and time. A broken
connection is resumed with ``Last-Event-ID``, so nothing is shown twice or lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live
from rich.text import Text

_TERMINAL = {"run.completed", "run.failed", "run.cancelled"}


def _events(http: httpx.Client, run_id: str, after: int) -> Iterator[dict[str, Any]]:
    headers = {"Accept": "text/event-stream", "Last-Event-ID": str(after)}
    with http.stream("GET", f"/v1/runs/{run_id}/events", headers=headers, timeout=None) as resp:
        if resp.status_code != 200:
            resp.read()
            problem = resp.json()
            raise RuntimeError(f"{problem.get('type')}: {problem.get('detail')}")
        for line in resp.iter_lines():
            if line.startswith("data:"):
                yield json.loads(line[5:].strip())


class _View:
    def __init__(self, console: Console, started: float) -> None:
        self.console, self.started = console, started
        self.status = "queued"
        self.usage: dict[str, Any] = {}
        self.open_message: str | None = None
        self.calls: dict[str, str] = {}

    def line(self) -> Text:
        u = self.usage
        return Text(
            f"● {self.status} · turns {u.get('turns', 0)} · tokens {u.get('inputTokens', 0)} in / "
            f"{u.get('outputTokens', 0)} out · ${u.get('costUsd', 0):.4f} · "
            f"{time.monotonic() - self.started:.1f}s",
            style="dim",
        )

    def _end_text(self) -> None:
        if self.open_message is not None:
            self.console.print()
            self.open_message = None

    def show(self, ev: dict[str, Any]) -> None:
        kind, data = ev["type"], ev.get("data") or {}
        if kind == "message.delta":
            self.open_message = data.get("messageId")
            self.console.print(data.get("text", ""), end="", highlight=False, markup=False)
            return
        self._end_text()
        if kind == "turn.retried":
            self.console.print("[yellow]↻ model turn retried[/yellow]")
        elif kind == "tool.call":
            args = json.dumps(data.get("input", {}))
            self.calls[data["toolCallId"]] = data["name"]
            self.console.print(f"[cyan]▸ {data['name']}[/cyan] {args[:100]}", highlight=False)
        elif kind == "tool.result":
            first = (data.get("output") or "").strip().splitlines()[:1]
            mark = "[red]✗[/red]" if data.get("isError") else "[green]✓[/green]"
            self.console.print(f"  {mark} {first[0][:110] if first else ''}", highlight=False)
        elif kind == "usage.updated":
            self.usage = data
        elif kind == "sandbox.ready":
            self.status = "running"
        elif kind == "run.started":
            self.status = "pending"
        elif kind == "run.waiting_for_input":
            self.status = "waiting_for_input"
            self.console.print(f"[magenta]? {data.get('question', '')}[/magenta]")
        elif kind == "guardrail.triggered":
            self.console.print(
                f"[red]guardrail {data.get('guardrail')} reached ({data.get('value')})[/red]"
            )
        elif kind in _TERMINAL:
            self.status = kind.removeprefix("run.")


def follow_run(http: httpx.Client, run_id: str, *, started: float) -> int:
    """Follow the run to its end; returns 0 when it completed, 1 otherwise."""
    console = Console(stderr=True)
    view = _View(console, started)
    seen, failures = 0, 0
    with Live(view.line(), console=console, refresh_per_second=8, transient=True) as live:
        while True:
            try:
                for ev in _events(http, run_id, seen):
                    seen = ev["seq"]
                    view.show(ev)
                    live.update(view.line())
                    if ev["type"] in _TERMINAL:
                        break
                else:
                    continue  # the server closed early: resume after the last seen event
                break
            except httpx.HTTPError:
                failures += 1
                if failures > 30:
                    raise
                time.sleep(min(5.0, 0.2 * failures))
    run = http.get(f"/v1/runs/{run_id}").json()
    for out in run.get("outputs", []):
        if out.get("type") != "text":
            Console().print(out)
    final = next((o["text"] for o in run.get("outputs", []) if o.get("type") == "text"), "")
    print(final)
    summary = f"{run['status']}"
    if run.get("failReason"):
        summary += (
            f" ({run['failReason']}{': ' + run['error']['message'] if run.get('error') else ''})"
        )
    u = run["usage"]
    console.print(
        f"[bold]{summary}[/bold] · {u['turns']} turns · ${u['costUsd']:.4f} · "
        f"{(run.get('durationMs') or 0) / 1000:.1f}s",
        highlight=False,
    )
    return 0 if run["status"] == "completed" else 1
