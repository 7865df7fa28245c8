"""``runyard message ID TEXT [--queue]``: a message to a busy run, and ``runyard messages
ID`` to list them (``POST``/``GET /v1/runs/{id}/messages``)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cli.client_commands import ApiKey, ApiUrl, RunId, _client
from cli.terminal import clean
from runyard.client import DEFAULT_API_URL


def message(
    run_id: RunId,
    text: Annotated[str, typer.Argument(help="The message ('-' reads standard input).")],
    queue: Annotated[
        bool,
        typer.Option(
            "--queue",
            help="Deliver it when the agent would otherwise finish (default: steer, read "
            "before the agent's next model call).",
        ),
    ] = False,
    expected_turn: Annotated[
        int | None,
        typer.Option("--expected-turn", help="Refused (409) if the run is past this turn."),
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """Send a message to a busy run (it answers a question the run waits on)."""
    content = sys.stdin.read().removesuffix("\n") if text == "-" else text
    mode = "queue" if queue else "steer"
    with _client(api_url, api_key) as client:
        sent = client.send_message(run_id, content, mode=mode, expected_turn=expected_turn)
    typer.echo(f"{sent.id} {mode} {sent.status}")


def messages(
    run_id: RunId,
    status: Annotated[
        str | None, typer.Option(help="pending, delivered, cancelled or dropped.")
    ] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """The messages sent to a run, oldest first (the first 100)."""
    with _client(api_url, api_key) as client:
        page = client.messages(run_id, status=status, limit=100)
    for m in page.data:
        turn = f"turn {m.turn}" if m.turn is not None else "-"
        typer.echo(f"{m.id}  {m.mode:<5}  {m.status:<9}  {turn:<8}  {clean(m.content)[:60]}")


def register(app: typer.Typer) -> None:
    app.command()(message)
    app.command()(messages)
