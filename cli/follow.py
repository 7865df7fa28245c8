"""``runyard follow`` and ``runyard run --follow``: a run's events, live in the terminal.

Message text appears line by line as it streams (each line once); each tool call is one
line, with the last lines of its output (all of it with ``--verbose``); questions and the
user's answers are shown; a status line at the bottom ticks the elapsed time. When the run
asks a question and standard input is a terminal, the user is prompted and the answer is
sent. The event stream resumes after a cut with ``Last-Event-ID`` (``Runyard.events``):
nothing is shown twice or lost.

The run's final text goes to standard output, everything else to standard error. On a
terminal the text streams on standard error and is not repeated. Redirected (``| tee``,
``> file``, ``2>&1``), a message is held until the run shows it was not the last one (a
tool call follows), so the final text appears once, on standard output only.
"""

from __future__ import annotations

import select
import sys
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from cli.approve import prompt_approval
from cli.approve import show as approval_line
from cli.terminal import clean, json_text
from runyard.client import Event, Run, Runyard, RunyardAPIError, Usage

TAIL_LINES = 5
TERMINAL_EVENTS = ("run.completed", "run.failed", "run.cancelled")
# What may come between the final message and the end of the run (a held message waits).
_ENDING_EVENTS = (*TERMINAL_EVENTS, "output.detected", "guardrail.triggered")


def _safe(value: object) -> str:
    """Run data inside rich markup: control characters shown (``clean``), markup escaped."""
    return escape(clean(str(value)))


def _since(stamp: str | None) -> float | None:
    """The monotonic clock reading of an RFC 3339 time of the server."""
    if not stamp:
        return None
    try:
        at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return time.monotonic() - max(0.0, (datetime.now(UTC) - at).total_seconds())


def usage_line(status: str, usage: Usage, seconds: float) -> str:
    return (
        f"{status} · {usage.turns} turns · tokens {usage.input_tokens:,} in / "
        f"{usage.output_tokens:,} out · ${usage.cost_usd:.4f} · {seconds:.1f}s"
    )


class FollowView:
    """What the terminal shows of a run; ``__rich__`` is the status line, re-drawn by
    ``Live`` several times a second so the elapsed time ticks between events."""

    def __init__(self, console: Console, run: Run, *, verbose: bool, hold: bool = False) -> None:
        self.console, self.verbose, self.hold = console, verbose, hold
        self.run_id, self.usage = run.id, run.usage
        self.status: str = run.status
        self.started = _since(run.started_at or run.created_at) or time.monotonic()
        self.ended_after: float | None = (
            run.duration_ms / 1000 if run.is_terminal and run.duration_ms is not None else None
        )
        self.partial: dict[str, str] = {}  # text of a message not yet printed
        self.streamed = ""  # the last message's whole text, as shown
        self.shown_outputs: list[str] = []  # outputs shown live (``output.detected``)

    @property
    def elapsed(self) -> float:
        if self.ended_after is not None:
            return self.ended_after
        return max(0.0, time.monotonic() - self.started)

    def __rich__(self) -> Text:
        line = clean(usage_line(self.status, self.usage, self.elapsed))
        return Text(f"● {line}", style="dim")

    def _print(self, markup: str) -> None:
        self.console.print(markup)

    def flush(self) -> None:
        """Print what is left of streamed messages (they end with any other event)."""
        for text in self.partial.values():
            if text:
                self.console.print(clean(text), markup=False)
        self.partial.clear()

    def show(self, ev: Event) -> None:
        kind, data = ev.type, ev.data
        if kind == "message.delta":
            mid = str(data.get("messageId", ""))
            if mid not in self.partial and not self.partial:
                self.streamed = ""
            text = self.partial.get(mid, "") + str(data.get("text", ""))
            self.streamed += str(data.get("text", ""))
            done, sep, rest = text.rpartition("\n")
            if sep and not self.hold:
                self.console.print(clean(done), markup=False)
            self.partial[mid] = text if self.hold else rest
            return
        if kind == "turn.retried":
            self.partial.pop(str(data.get("messageId", "")), None)
            self.streamed = ""
            self._print("[yellow]↻ model turn retried[/yellow]")
            return
        if kind in ("message.completed", "usage.updated"):
            if kind == "usage.updated":
                self.usage = Usage.model_validate(data)
            elif not self.hold:
                self.flush()
            return
        if not self.hold or kind not in _ENDING_EVENTS:  # a held message was not the last
            self.flush()
        self._show_other(kind, data)

    def _show_other(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "run.started":
            self.status = "pending"
        elif kind == "sandbox.ready":
            self.status = "running"
        elif kind == "sandbox.setup":
            for line in str(data.get("output") or data.get("line") or "").splitlines():
                self._print(f"[dim]  setup │ {_safe(line)}[/dim]")
        elif kind == "tool.call" and data.get("name") != "ask_user":  # the question follows
            args = json_text(data.get("input", {}))
            if not self.verbose and len(args) > 100:
                args = args[:99] + "…"
            self._print(f"[cyan]▸ {_safe(str(data.get('name')))}[/cyan] {_safe(args)}")
        elif kind == "tool.result":
            self._tool_result(data)
        elif kind == "run.waiting_for_input":
            self.status = "waiting_for_input"
            self._print(f"[bold magenta]? {_safe(str(data.get('question', '')))}[/bold magenta]")
        elif kind == "run.input_received":
            self.status = "running"
            label = "message" if data.get("queued") else "answer"
            self._print(f"[green]→ {label}: {_safe(str(data.get('content', '')))}[/green]")
        elif kind == "output.detected" and data.get("type") != "text":  # text: as it streamed
            self.shown_outputs.append(_output_key(data))
            self._print(f"[blue]⇢ output {_safe(json_text(data))}[/blue]")
        elif kind == "guardrail.triggered":
            self._print(
                f"[red]guardrail {_safe(str(data.get('guardrail')))} reached "
                f"({_safe(str(data.get('value')))})[/red]"
            )
        elif kind in TERMINAL_EVENTS:
            self.status = kind.removeprefix("run.")
            self.ended_after = self.elapsed
        elif (shown := approval_line(kind, data)) is not None:
            self._print(shown)

    def _tool_result(self, data: dict[str, Any]) -> None:
        lines = str(data.get("output") or "").rstrip().splitlines()
        mark = "[red]✗[/red]" if data.get("isError") else "[green]✓[/green]"
        if not lines:
            self._print(f"  {mark} [dim](no output)[/dim]")
            return
        shown = lines if self.verbose else lines[-TAIL_LINES:]
        hidden = len(lines) - len(shown)
        self._print(f"  {mark} [dim]{len(lines)} line{'s' if len(lines) != 1 else ''}[/dim]")
        if hidden:
            self._print(f"  [dim]│ … {hidden} more above (--verbose shows all)[/dim]")
        for line in shown:
            self._print(f"  [dim]│[/dim] {_safe(line if self.verbose else line[:200])}")


def _question_open(client: Runyard, run_id: str, seq: int) -> bool:
    """The question of event ``seq`` still waits: nothing has happened since (a replay of
    an old, answered question is followed by its ``run.input_received``)."""
    return not client.event_page(run_id, after=seq, limit=1)


def _prompt(client: Runyard, console: Console, run_id: str) -> None:
    """Read one line from the terminal and send it as the answer. Gives up when the run
    stops waiting meanwhile (answered elsewhere, cancelled)."""
    ask = "[bold]answer[/bold] [dim](Enter sends, Ctrl-D skips)[/dim]: "
    console.print(ask, end="")
    last_check = time.monotonic()
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], 0.5)
        if not ready:
            if time.monotonic() - last_check >= 2:
                last_check = time.monotonic()
                if client.status(run_id).status != "waiting_for_input":
                    console.print("\n[dim](the run no longer waits for an answer)[/dim]")
                    return
            continue
        line = sys.stdin.readline()
        if line == "":
            console.print(f"\n[dim]not answered; later: runyard answer {run_id} TEXT[/dim]")
            return
        text = line.rstrip("\n")
        if not text.strip():
            console.print(ask, end="")
            continue
        try:
            client.answer(run_id, text)
        except RunyardAPIError as exc:
            if exc.code != "RUN_NOT_WAITING_FOR_INPUT":
                raise
            console.print("[dim](the run no longer waits for an answer)[/dim]")
        return


def terminal(**kwargs: Any) -> Console:
    """The console ``follow`` writes to (stderr). Nothing is coloured but what its markup
    says: rich's automatic highlighting coloured the "0x" inside a run id such as
    ``run_x2s5…pa0xg44…`` as a hex number, splitting the id with escape codes, and would
    colour numbers and paths in the agent's output as it pleased."""
    console = Console(stderr=True, highlight=False, **kwargs)
    console.soft_wrap = not console.is_terminal  # a log file gets whole lines, not 80 columns
    return console


def follow_run(
    client: Runyard, run_id: str, *, verbose: bool = False, interactive: bool | None = None
) -> int:
    """Follow the run to its end; 0 when it completed, 1 when not, 130 on Ctrl-C."""
    console = terminal()
    interactive = sys.stdin.isatty() if interactive is None else interactive
    to_terminal = console.is_terminal and sys.stdout.isatty()
    view = FollowView(console, client.get(run_id), verbose=verbose, hold=not to_terminal)
    live = Live(view, console=console, refresh_per_second=4, transient=True)
    try:
        with live:
            for ev in client.events(run_id):
                view.show(ev)
                if ev.type == "approval.requested":
                    if interactive:
                        live.stop()
                        prompt_approval(client, console, run_id, ev.data)
                        live.start()
                    else:
                        console.print(f"[dim]  decide with: runyard approve {run_id}[/dim]")
                    continue
                if ev.type != "run.waiting_for_input" or not _question_open(client, run_id, ev.seq):
                    continue
                if interactive:
                    live.stop()
                    _prompt(client, console, run_id)
                    live.start()
                else:
                    console.print(f"[dim]  answer with: runyard answer {run_id} TEXT[/dim]")
    except KeyboardInterrupt:
        view.flush()
        console.print(
            f"\nStopped following; {run_id} goes on. Re-attach with: runyard follow {run_id}"
        )
        return 130
    return _conclude(client.get(run_id), view, console)


def _output_key(fields: dict[str, Any]) -> str:
    """An output as its event and the run object both give it (no empty fields)."""
    return json_text({k: v for k, v in fields.items() if v is not None})


def _conclude(run: Run, view: FollowView, console: Console) -> int:
    """The outputs, the final text (once), and the final line with the usage."""
    final = run.text or ""
    held = "".join(view.partial.values())
    if not view.hold or held.strip() != final.strip():
        view.flush()  # not the final text (a run that failed after it, say): show it
    view.partial.clear()
    for out in run.outputs:
        if out.type != "text":
            fields = out.model_dump(exclude_none=True, by_alias=True)
            if _output_key(fields) in view.shown_outputs:  # shown live: not twice
                view.shown_outputs.remove(_output_key(fields))
                continue
            console.print(f"[blue]output[/blue] {_safe(json_text(fields))}")
    # On a terminal the text was just shown as it streamed (on standard error, the same
    # screen): printing it again showed it twice. Redirected, the stream held it back and
    # standard output gets it, once.
    shown = not view.hold and final.strip() == view.streamed.strip()
    if final and not shown:
        print(clean(final), flush=True)
    summary = str(run.status)
    if run.fail_reason:
        summary += f" ({run.fail_reason}{': ' + run.error.code if run.error else ''})"
        if run.error and run.error.message:
            summary += f" {run.error.message}"
    seconds = (run.duration_ms or 0) / 1000 if run.duration_ms is not None else view.elapsed
    console.print(f"[bold]{_safe(usage_line(summary, run.usage, seconds))}[/bold]")
    return 0 if run.status == "completed" else 1
