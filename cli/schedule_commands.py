"""``runyard schedules create|list|get|pause|unpause|trigger|delete``: scheduled runs,
through ``runyard.client``, with the client commands' API URL, key and error handling."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from cli.client_commands import ApiKey, ApiUrl, _client, _dump, repo_argument
from cli.terminal import clean
from runyard.client import DEFAULT_API_URL

ScheduleId = Annotated[str, typer.Argument(help="The schedule's id (sch_…).")]
schedules_app = typer.Typer(
    help="Scheduled runs (Temporal Schedules) of your organization.", no_args_is_help=True
)


@schedules_app.command("create")
def create(
    prompt: Annotated[str, typer.Argument(help="The runs' prompt ('-' reads standard input).")],
    cron: Annotated[
        list[str] | None, typer.Option(help="A cron expression (repeatable), e.g. '0 9 * * 1-5'.")
    ] = None,
    every: Annotated[
        int | None, typer.Option(help="Fire every this many seconds (at least 60).")
    ] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of the cron.")] = "UTC",
    name: Annotated[str | None, typer.Option(help="A name for the schedule.")] = None,
    repo: Annotated[str | None, typer.Option(help="Repository: owner/name, URL or path.")] = None,
    model: Annotated[str | None, typer.Option(help="sonnet, opus, haiku, scripted …")] = None,
    template: Annotated[str | None, typer.Option(help="Sandbox template slug.")] = None,
    thread_id: Annotated[str | None, typer.Option(help="Continue this thread.")] = None,
    overlap: Annotated[
        str, typer.Option(help="skip, buffer_one, buffer_all, cancel_other or allow_all.")
    ] = "skip",
    max_runs: Annotated[int | None, typer.Option(help="Stop after this many fires.")] = None,
    pause_on_failure: Annotated[
        bool, typer.Option("--pause-on-failure", help="Pause when a run fails.")
    ] = False,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it off.")] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """Create a schedule; prints its id and its next fires."""
    if (cron is None) == (every is None):
        typer.echo("error: give --cron or --every (one of them)", err=True)
        raise typer.Exit(2)
    text = sys.stdin.read() if prompt == "-" else prompt
    spec: dict[str, Any] = {"timezone": timezone}
    spec |= {"cron": cron} if cron else {"interval": {"everySeconds": every}}
    run: dict[str, Any] = {"prompt": text}
    for key, value in (("repo", repo_argument(repo)), ("model", model), ("template", template)):
        if value is not None:
            run[key] = value
    with _client(api_url, api_key) as client:
        made = client.create_schedule(
            spec=spec,
            run=run,
            name=name,
            thread_id=thread_id,
            overlap=overlap,
            max_runs=max_runs,
            pause_on_failure=pause_on_failure,
            enabled=not disabled,
        )
    typer.echo(made.id)
    for when in made.upcoming:
        typer.echo(f"  next: {when}", err=True)


@schedules_app.command("list")
def list_(
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many.")] = 20,
    page: Annotated[int, typer.Option(min=1)] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="The API's page as JSON.")] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """List schedules, newest first."""
    with _client(api_url, api_key) as client:
        listed = client.list_schedules(limit=limit, page=page)
    if as_json:
        _dump(listed.model_dump(by_alias=True, mode="json"))
        return
    rows = [("ID", "STATE", "OVERLAP", "NEXT", "NAME")]
    for s in listed.data:
        state = "disabled" if not s.enabled else "paused" if s.paused else "active"
        rows.append((s.id, state, s.overlap, s.next_run_at or "-", s.name or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        line = "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]])
        typer.echo(clean(line))
    p = listed.pagination
    typer.echo(f"page {p.page} of {max(p.total_pages, 1)} · {p.total} schedules", err=True)


@schedules_app.command("get")
def get(schedule_id: ScheduleId, api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = None) -> None:
    """The schedule object (next fires, notes, recent runs), as JSON."""
    with _client(api_url, api_key) as client:
        got = client.get_schedule(schedule_id)
    _dump(got.model_dump(by_alias=True, mode="json"))


@schedules_app.command("pause")
def pause(
    schedule_id: ScheduleId,
    note: Annotated[str | None, typer.Option(help="Why (kept in the schedule's notes).")] = None,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """Pause a schedule."""
    with _client(api_url, api_key) as client:
        client.pause_schedule(schedule_id, note)
    typer.echo(f"{schedule_id} paused")


@schedules_app.command("unpause")
def unpause(
    schedule_id: ScheduleId, api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = None
) -> None:
    """Unpause a schedule."""
    with _client(api_url, api_key) as client:
        got = client.unpause_schedule(schedule_id)
    typer.echo(f"{schedule_id} unpaused; next: {got.next_run_at or '-'}")


@schedules_app.command("trigger")
def trigger(
    schedule_id: ScheduleId, api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = None
) -> None:
    """Fire a schedule now; prints the run's id."""
    with _client(api_url, api_key) as client:
        fired = client.trigger_schedule(schedule_id)
    typer.echo(fired.run_id)


@schedules_app.command("delete")
def delete(
    schedule_id: ScheduleId, api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = None
) -> None:
    """Delete a schedule (its runs in flight go on)."""
    with _client(api_url, api_key) as client:
        client.delete_schedule(schedule_id)
    typer.echo(f"{schedule_id} deleted")
