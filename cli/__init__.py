"""The ``runyard`` command line: dev, api, worker, run; keys and credits in ``accounts``.

A launcher: it builds the ``Settings`` of each command from the environment and its
flags, and hands them to what it starts. It never writes ``os.environ``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from cli.accounts import credits_app, keys_app
from runyard.settings import Settings

app = typer.Typer(
    help="Runyard: AI coding agents as durable Temporal workflows.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
app.add_typer(credits_app, name="credits", no_args_is_help=True)


def _settings(**overrides: object) -> Settings:
    """The environment's settings, with the flags that were given (``None`` = not given)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            typer.echo(f"invalid setting {name}: {err['msg']}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    temporal_port: Annotated[int, typer.Option(help="Temporal gRPC port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal UI port.")] = 8233,
    data_dir: Annotated[Path, typer.Option(help="Where state is kept.")] = Path(".runyard"),
    host: Annotated[str, typer.Option(help="API bind address.")] = "127.0.0.1",
) -> None:
    """Run the Temporal dev server, the worker and the API in the foreground (Ctrl-C stops all)."""
    from cli.dev import serve_dev

    serve_dev(
        port=port,
        temporal_port=temporal_port,
        ui_port=ui_port,
        data_dir=data_dir,
        host=host,
        settings=lambda **kw: _settings(data_dir=data_dir, **kw),
    )


@app.command()
def api(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    data_dir: Annotated[Path | None, typer.Option(help="Where state is kept.")] = None,
) -> None:
    """Run the HTTP API only."""
    import uvicorn

    from api.app import create_app
    from cli.dev import KEEP_ALIVE_SECONDS
    from runyard.logging import configure_logging

    settings = _settings(data_dir=data_dir)
    configure_logging(settings.log_level, json=settings.log_json)
    if workers == 1:
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_level="warning",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
        return
    if data_dir is not None:  # worker processes import the app: only the environment reaches them
        typer.echo("with --workers, set RUNYARD_DATA_DIR instead of --data-dir", err=True)
        raise typer.Exit(2)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="warning",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


@app.command()
def worker(
    data_dir: Annotated[Path | None, typer.Option(help="Where state is kept.")] = None,
) -> None:
    """Run the Temporal worker only."""
    from worker import main

    main(_settings(data_dir=data_dir))


@app.command()
def run(
    prompt: Annotated[str, typer.Argument(help="The prompt ('-' reads standard input).")],
    repo: Annotated[str | None, typer.Option(help="Repository: path, URL or owner/name.")] = None,
    model: Annotated[
        str | None, typer.Option(help="sonnet, opus, haiku, scripted or a model id.")
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Follow the run until it ends.")] = False,
    api_url: Annotated[str, typer.Option(envvar="RUNYARD_API_URL")] = "http://127.0.0.1:8000",
    api_key: Annotated[str | None, typer.Option(envvar="RUNYARD_API_KEY")] = None,
) -> None:
    """Create and execute a run; with --follow, show it until it ends."""
    import httpx

    from cli.follow import follow_run

    if not api_key:
        typer.echo(
            "set RUNYARD_API_KEY (runyard keys create --org ORG) or pass --api-key", err=True
        )
        raise typer.Exit(2)
    text = sys.stdin.read() if prompt == "-" else prompt
    body: dict[str, object] = {"prompt": text, "start": True}
    if repo:
        body["repo"] = repo
    if model:
        body["model"] = model
    with httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
    ) as http:
        resp = http.post("/v1/runs", json=body)
        if resp.status_code >= 400:
            problem = resp.json()
            typer.echo(f"{problem.get('type')}: {problem.get('detail')}", err=True)
            raise typer.Exit(1)
        run_obj = resp.json()
        typer.echo(run_obj["id"])
        if follow:
            code = follow_run(http, run_obj["id"], started=time.monotonic())
            raise typer.Exit(code)


if __name__ == "__main__":
    app()
