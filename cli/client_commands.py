"""The client side of the command line: ``run``, ``runs list|get``, ``follow``, ``answer``,
``cancel`` and ``logs``. They speak HTTP to an API (``RUNYARD_API_URL``, default
http://127.0.0.1:8000) with a key (``RUNYARD_API_KEY``), through ``runyard.client``; any
failure is one line on standard error and a non-zero exit, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from cli.terminal import clean, json_text
from runyard.client import DEFAULT_API_URL, Runyard, RunyardAPIError

ApiUrl = Annotated[
    str,
    typer.Option("--api-url", envvar="RUNYARD_API_URL", help="The Runyard API."),
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="RUNYARD_API_KEY", help="An API key (ry_live_…)."),
]
Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show tool calls and their output in full.")
]
RunId = Annotated[str, typer.Argument(help="The run's id (run_…).")]

runs_app = typer.Typer(help="Runs of the organization of your API key.", no_args_is_help=True)


@contextmanager
def _client(api_url: str, api_key: str | None) -> Iterator[Runyard]:
    """A client; an API error or an unreachable API becomes one line and exit 1."""
    if not api_key:
        typer.echo(
            "error: no API key: set RUNYARD_API_KEY (create one with "
            "`runyard keys create --org ORG`) or pass --api-key",
            err=True,
        )
        raise typer.Exit(2)
    try:
        with Runyard(api_url, api_key) as client:
            yield client
    except RunyardAPIError as exc:
        typer.echo(f"error: {clean(str(exc))}", err=True)
        raise typer.Exit(1) from None


def repo_argument(repo: str | None) -> str | None:
    """``--repo`` as the API takes it: a relative path (``.``, ``..``, ``./x``, ``../x``,
    ``~/x``) becomes the absolute path it names here; anything else is sent as given
    (``src/x`` is an owner/name slug: write ``./src/x`` for the directory)."""
    if repo is None:
        return None
    if repo in (".", "..", "~") or repo.startswith(("./", "../", "~/")):
        return str(Path(repo).expanduser().resolve())
    return repo


def _dump(data: object) -> None:
    typer.echo(json_text(data, indent=2))


def run(
    prompt: Annotated[str, typer.Argument(help="The prompt ('-' reads standard input).")],
    repo: Annotated[
        str | None,
        typer.Option(help="Repository: owner/name, a URL, or a path (./x, ../x, /abs/x)."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="sonnet, opus, haiku, scripted or a model id.")
    ] = None,
    template: Annotated[str | None, typer.Option(help="Sandbox template slug.")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Follow the run until it ends.")] = False,
    verbose: Verbose = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """Create and start a run; prints its id. With --follow, show it live until it ends
    (and prompt for answers to its questions when standard input is a terminal)."""
    from cli.follow import follow_run

    text = sys.stdin.read() if prompt == "-" else prompt
    with _client(api_url, api_key) as client:
        created = client.create(
            text, start=True, repo=repo_argument(repo), model=model, template=template
        )
        typer.echo(created.id)
        if follow:
            code = follow_run(client, created.id, verbose=verbose)
            raise typer.Exit(code)


def follow(
    run_id: RunId,
    verbose: Verbose = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """Show a run live until it ends (Ctrl-C stops following; the run goes on)."""
    from cli.follow import follow_run

    with _client(api_url, api_key) as client:
        code = follow_run(client, run_id, verbose=verbose)
    raise typer.Exit(code)


def answer(
    run_id: RunId,
    text: Annotated[str, typer.Argument(help="The answer ('-' reads standard input).")],
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """Answer the question a run waits on."""
    # `echo yes | runyard answer ID -`: the newline echo adds is not part of the answer.
    content = sys.stdin.read().removesuffix("\n") if text == "-" else text
    with _client(api_url, api_key) as client:
        client.answer(run_id, content)
    typer.echo(f"answered {run_id}", err=True)


def cancel(run_id: RunId, api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = None) -> None:
    """Cancel a run (a run that has ended keeps its status)."""
    with _client(api_url, api_key) as client:
        result = client.cancel(run_id)
    typer.echo(f"{result.id} {result.status}")


def logs(run_id: RunId, api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = None) -> None:
    """Every event of a run, one JSON object a line."""
    with _client(api_url, api_key) as client:
        for ev in client.logs(run_id):
            typer.echo(json_text(ev.model_dump(by_alias=True)))


@runs_app.command("list")
def runs_list(
    status: Annotated[
        str | None, typer.Option(help="Only these statuses, comma-separated (e.g. running).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many.")] = 20,
    page: Annotated[int, typer.Option(min=1)] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="The API's page as JSON.")] = False,
    api_url: ApiUrl = DEFAULT_API_URL,
    api_key: ApiKey = None,
) -> None:
    """List runs, newest first."""
    with _client(api_url, api_key) as client:
        listed = client.list(status=status, limit=limit, page=page)
    if as_json:
        _dump(listed.model_dump(by_alias=True, mode="json"))
        return
    p = listed.pagination
    rows = [("ID", "STATUS", "MODEL", "CREATED", "TURNS", "COST", "PROMPT")]
    for r in listed.data:
        first = (r.prompt.strip().splitlines() or [""])[0]
        rows.append(
            (
                r.id,
                r.status,
                r.model or "",
                r.created_at or "",
                str(r.usage.turns),
                f"${r.usage.cost_usd:.4f}",
                first[:40] + ("…" if len(first) > 40 else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        line = "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]])
        typer.echo(clean(line))
    typer.echo(f"page {p.page} of {max(p.total_pages, 1)} · {p.total} runs", err=True)


@runs_app.command("get")
def runs_get(run_id: RunId, api_url: ApiUrl = DEFAULT_API_URL, api_key: ApiKey = None) -> None:
    """The run object, as JSON."""
    with _client(api_url, api_key) as client:
        got = client.get(run_id)
    _dump(got.model_dump(by_alias=True, mode="json"))


def register(app: typer.Typer) -> None:
    """Add these commands to the ``runyard`` command line."""
    app.command()(run)
    app.add_typer(runs_app, name="runs")
    for command in (follow, answer, cancel, logs):
        app.command()(command)
    from cli.approve import approve

    app.command()(approve)
