"""``runyard fork ID --turn K [--attempts N]`` and ``runyard checkpoints ID`` (issue 26):
the client side of checkpoints and forks, through ``runyard.client``."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.client_commands import ApiKey, ApiUrl, RunId, _client, _dump
from cli.terminal import clean
from runyard.client import DEFAULT_API_URL


def fork(
    run_id: RunId,
    turn: Annotated[int, typer.Option("--turn", min=1, help="The turn boundary to fork at.")],
    attempts: Annotated[
        int, typer.Option("--attempts", min=1, max=4, help="How many forks (best-of-N).")
    ] = 1,
    restore: Annotated[
        str, typer.Option(help="both, conversation or code: what the forks start from.")
    ] = "both",
    prompt: Annotated[str | None, typer.Option(help="A new prompt the forks go on with.")] = None,
    model: Annotated[str | None, typer.Option(help="Another model for the forks.")] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """Fork a run at a turn: new runs start from its code and conversation as they were at
    the end of that turn (the run itself is not changed). Prints each new run's id."""
    with _client(api_url, api_key) as client:
        made = client.fork(
            run_id, turn, restore=restore, prompt=prompt, attempts=attempts, model=model
        )
    for run in made:
        typer.echo(run.id)
    if made and made[0].group_id:
        typer.echo(f"group {made[0].group_id} · forked from {run_id} at turn {turn}", err=True)


def checkpoints(
    run_id: RunId,
    diff: Annotated[
        int | None, typer.Option("--diff", min=1, help="Print this turn's checkpoint diff.")
    ] = None,
    base: Annotated[bool, typer.Option("--base", help="With --diff: against the base.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The API's page as JSON.")] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """A run's checkpoints (the turns that changed its worktree), or one's diff."""
    with _client(api_url, api_key) as client:
        if diff is not None:
            typer.echo(client.checkpoint_diff(run_id, diff, vs="base" if base else "previous"))
            return
        listed = client.checkpoints(run_id, limit=100)
    if as_json:
        _dump(listed.model_dump(by_alias=True, mode="json"))
        return
    typer.echo("TURN  SEQ  FILES  +/-          TREE      CREATED")
    for c in listed.data:
        changes = f"+{c.insertions}/-{c.deletions}"
        line = f"{c.turn:<5} {c.seq:<4} {c.files:<6} {changes:<12} {c.tree_sha[:8]}  {c.created_at}"
        typer.echo(clean(line))
    typer.echo(f"{listed.pagination.total} checkpoints", err=True)


def register(app: typer.Typer) -> None:
    app.command()(fork)
    app.command()(checkpoints)
