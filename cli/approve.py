"""Approvals on the command line: ``runyard approve RUN [APR] [--deny --message M]``, and
the approve / deny / edit prompt of ``runyard follow`` for a tool call that waits."""

from __future__ import annotations

import json
import select
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from cli.client_commands import ApiKey, ApiUrl, RunId, _client
from cli.terminal import clean, json_text
from runyard.client import DEFAULT_API_URL, Runyard, RunyardAPIError

# A decision another client made meanwhile, or a call that no longer waits.
_GONE = ("APPROVAL_ALREADY_DECIDED", "APPROVAL_NOT_PENDING")


def approve(
    run_id: RunId,
    approval_id: Annotated[
        str | None,
        typer.Argument(help="The approval (apr_…); without it, every approval that waits."),
    ] = None,
    deny: Annotated[bool, typer.Option("--deny", help="Deny instead of approving.")] = False,
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Said to the model (with --deny).")
    ] = None,
    for_run: Annotated[
        bool,
        typer.Option("--for-run", help="Allow this tool and match for the rest of the run."),
    ] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """Approve (or --deny) a tool call a run waits on."""
    decision = "deny" if deny else "approve"
    scope = "run" if for_run and not deny else "once"
    with _client(api_url, api_key) as client:
        if approval_id is not None:
            ids = [approval_id]
        else:
            ids = [a.id for a in client.approvals(run_id, status="pending", limit=100).data]
            if not ids:
                typer.echo(f"error: {run_id} has no tool call waiting for approval", err=True)
                raise typer.Exit(1)
        items = [{"id": i, "decision": decision, "message": message, "scope": scope} for i in ids]
        decided = client.decide(run_id, items)
    for a in decided:
        typer.echo(clean(f"{a.id} {a.status} {a.tool} {json_text(a.input)}"))


def _pending(client: Runyard, run_id: str, approval_id: str) -> bool:
    return approval_id in {a.id for a in client.approvals(run_id, status="pending").data}


def _read_line(client: Runyard, console: Console, run_id: str, ask: str) -> str | None:
    """A line from the terminal; None on Ctrl-D or once the run no longer waits."""
    console.print(ask, end="")
    last_check = time.monotonic()
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], 0.5)
        if ready:
            line = sys.stdin.readline()
            return None if line == "" else line.rstrip("\n")
        if time.monotonic() - last_check >= 2:
            last_check = time.monotonic()
            if client.status(run_id).status != "waiting_for_input":
                console.print("\n[dim](the run no longer waits)[/dim]")
                return None


def _decision(client: Runyard, console: Console, run_id: str) -> dict[str, Any] | None:
    ask = "[bold]approve[/bold] [dim]a[/dim] · [bold]deny[/bold] [dim]d[/dim] · "
    ask += "[bold]edit[/bold] [dim]e[/dim] [dim](Ctrl-D skips)[/dim]: "
    while True:
        choice = _read_line(client, console, run_id, ask)
        if choice is None:
            return None
        choice = choice.strip().lower()
        if choice in ("a", "approve"):
            return {"decision": "approve"}
        if choice in ("d", "deny"):
            said = _read_line(client, console, run_id, "message for the agent (optional): ")
            return {"decision": "deny", "message": said or None}
        if choice in ("e", "edit"):
            raw = _read_line(client, console, run_id, "the input as JSON: ")
            try:
                value = json.loads(raw or "")
            except ValueError:
                console.print("[red]not JSON[/red]")
                continue
            return {"decision": "edit", "input": value}


def prompt_approval(client: Runyard, console: Console, run_id: str, data: dict[str, Any]) -> None:
    """Show a call that waits and send the decision typed for it."""
    approval_id = str(data.get("approvalId"))
    if not _pending(client, run_id, approval_id):
        return
    name = escape(clean(str(data.get("name"))))
    console.print(f"[bold yellow]! {name} waits for approval[/bold yellow]")
    console.print(escape(json_text(data.get("input"), indent=2)))
    chosen = _decision(client, console, run_id)
    if chosen is None:
        if _pending(client, run_id, approval_id):
            console.print(
                f"\n[dim]not decided; later: runyard approve {run_id} {approval_id}[/dim]"
            )
        else:
            console.print("\n[dim](decided elsewhere, or the run ended)[/dim]")
        return
    try:
        client.decide(run_id, [{"id": approval_id, **chosen}])
    except RunyardAPIError as exc:
        if exc.code not in _GONE:
            raise
        console.print(f"[dim]({escape(clean(str(exc)))})[/dim]")


def show(kind: str, data: dict[str, Any]) -> str | None:
    """The line ``runyard follow`` shows for an approval event (rich markup), or None."""
    if kind == "approval.requested":
        return f"[yellow]! {escape(clean(str(data.get('name'))))} waits for approval[/yellow]"
    if kind == "approval.resolved":
        who = f" by {data['decidedBy']}" if data.get("decidedBy") else ""
        return escape(clean(f"  → {data.get('decision')}{who}"))
    return None
