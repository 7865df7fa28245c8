"""``runyard run --follow``: a live display of a run until it ends."""

from __future__ import annotations

import time

import httpx
from rich.console import Console
from rich.live import Live
from rich.text import Text

_TERMINAL = {"completed", "failed", "cancelled"}


def follow_run(http: httpx.Client, run_id: str, *, started: float, interval: float = 0.5) -> int:
    """Poll the run's status, showing turns, tokens and cost; print its outputs at the end.

    Returns the process exit code: 0 when the run completed, 1 otherwise.
    """
    console = Console(stderr=True)
    status: dict[str, object] = {}
    with Live(Text(""), console=console, transient=True) as live:
        while True:
            status = http.get(f"/v1/runs/{run_id}/status").json()
            usage = status.get("usage") or {}
            assert isinstance(usage, dict)
            live.update(
                Text(
                    f"{status.get('status')} · turns {usage.get('turns', 0)} · "
                    f"tokens {usage.get('inputTokens', 0)}/{usage.get('outputTokens', 0)} · "
                    f"${usage.get('costUsd', 0):.4f} · {time.monotonic() - started:.1f}s"
                )
            )
            if status.get("status") in _TERMINAL:
                break
            time.sleep(interval)
    run = http.get(f"/v1/runs/{run_id}").json()
    for out in run.get("outputs", []):
        if out.get("type") == "text":
            Console().print(out.get("text", ""))
        else:
            Console().print(out)
    line = f"{run['status']}"
    if run.get("failReason"):
        line += f" ({run['failReason']}: {(run.get('error') or {}).get('message', '')})"
    console.print(
        f"[bold]{line}[/bold] in {run.get('durationMs') or 0} ms, ${run['usage']['costUsd']:.4f}"
    )
    return 0 if run["status"] == "completed" else 1
