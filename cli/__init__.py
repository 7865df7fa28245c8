"""The ``runyard`` command line: dev, api, worker here; keys and credits in
``cli/accounts.py``; the client commands (run, runs, follow, answer, cancel, logs) in
``cli/client_commands.py``.

A launcher: it builds the ``Settings`` of each command from the environment and its
flags, and hands them to what it starts. It never writes ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from cli.accounts import credits_app, keys_app
from cli.client_commands import register as register_client_commands
from cli.fork_commands import register as register_fork_commands
from cli.messages import register as register_messages
from cli.schedule_commands import schedules_app
from cli.status import register as register_status
from runyard.settings import Settings

app = typer.Typer(
    help="Runyard: AI coding agents as durable Temporal workflows.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
app.add_typer(credits_app, name="credits", no_args_is_help=True)
# run, runs list|get, follow, answer, cancel, logs: the client side (cli/client_commands.py).
register_client_commands(app)
register_status(app)  # runyard status (cli/status.py)
register_messages(app)  # runyard message, runyard messages (cli/messages.py)
app.add_typer(schedules_app, name="schedules")  # cli/schedule_commands.py
register_fork_commands(app)  # runyard fork, runyard checkpoints (cli/fork_commands.py)


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
    from cli.dev import GRACEFUL_SHUTDOWN_SECONDS, KEEP_ALIVE_SECONDS
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
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
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
        # Event streams never end by themselves: without a limit, a SIGTERM waited for
        # every client to hang up.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


@app.command()
def worker(
    data_dir: Annotated[Path | None, typer.Option(help="Where state is kept.")] = None,
) -> None:
    """Run the Temporal worker only."""
    from worker import main

    main(_settings(data_dir=data_dir))


if __name__ == "__main__":
    app()
