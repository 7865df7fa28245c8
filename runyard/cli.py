"""The ``runyard`` command line: dev, api, worker, keys create, run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from runyard.settings import Settings

# Longer than the idle timeout of clients and load balancers (60 s is common), so the
# server never closes a kept-alive connection the other side is about to reuse.
KEEP_ALIVE_SECONDS = 75

app = typer.Typer(
    help="Runyard: AI coding agents as durable Temporal workflows.", no_args_is_help=True
)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _settings(data_dir: Path | None = None) -> Settings:
    if data_dir is not None:
        os.environ["RUNYARD_DATA_DIR"] = str(data_dir)
    from runyard.settings import get_settings

    get_settings.cache_clear()
    return get_settings()


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    temporal_port: Annotated[int, typer.Option(help="Temporal gRPC port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal UI port.")] = 8233,
    data_dir: Annotated[Path, typer.Option(help="Where state is kept.")] = Path(".runyard"),
    host: Annotated[str, typer.Option(help="API bind address.")] = "127.0.0.1",
) -> None:
    """Run the Temporal dev server, the worker and the API in the foreground (Ctrl-C stops all)."""
    from runyard.devserver import DevServerConfig, start_dev_server, wait_for_port

    os.environ.setdefault("RUNYARD_ALLOW_PRIVATE_CALLBACKS", "true")
    os.environ.setdefault("RUNYARD_ALLOW_LOCAL_REPOS", "true")
    external = os.environ.get("TEMPORAL_ADDRESS")
    proc = None
    if not external:
        cfg = DevServerConfig.load()
        cfg.port, cfg.ui_port = temporal_port, ui_port
        os.environ["TEMPORAL_ADDRESS"] = cfg.address
        data_dir.mkdir(parents=True, exist_ok=True)
        proc = start_dev_server(cfg, data_dir)
        try:
            wait_for_port(cfg.ip, cfg.port, timeout=60, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            typer.echo(
                f"Temporal dev server did not start: {exc}; see {data_dir / 'temporal.log'}",
                err=True,
            )
            raise typer.Exit(1) from exc
    settings = _settings(data_dir)
    from runyard.logging import configure_logging

    configure_logging(settings.log_level, json=settings.log_json)
    typer.echo(f"Runyard API:   http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    if proc is not None:
        typer.echo(f"Temporal UI:   http://127.0.0.1:{ui_port}")
    typer.echo(f"Temporal:      {settings.temporal_address}   data: {settings.data_dir.resolve()}")
    typer.echo("Create a key:  runyard keys create --org demo   (Ctrl-C stops everything)")
    try:
        asyncio.run(_serve_all(settings, host, port))
    except KeyboardInterrupt:
        pass
    finally:
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except Exception:
                os.killpg(proc.pid, signal.SIGKILL)


async def _serve_all(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from api.app import create_app
    from runyard.db.engine import Database, migrate
    from runyard.housekeeping import housekeeping
    from runyard.temporal import connect
    from worker import build_worker

    migrate(settings.db_url)
    db = Database(settings.db_url)
    client = await connect(settings)
    worker = build_worker(client, settings, db)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, run_migrations=False),
            host=host,
            port=port,
            log_level="warning",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
    )
    chores = asyncio.create_task(housekeeping(client, db, settings))
    async with worker:
        await server.serve()  # returns on Ctrl-C / SIGTERM
    chores.cancel()
    await db.dispose()


@app.command()
def api(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Run the HTTP API only."""
    import uvicorn

    from runyard.logging import configure_logging

    settings = _settings()
    configure_logging(settings.log_level, json=settings.log_json)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


@app.command()
def worker() -> None:
    """Run the Temporal worker only."""
    from worker import main

    main()


@keys_app.command("create")
def keys_create(
    org: Annotated[str, typer.Option(help="Organization name (created if needed).")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated: runs:read,runs:write,admin.")
    ] = "runs:read,runs:write",
) -> None:
    """Create an API key; prints the key alone on stdout."""
    from runyard.store.orgs import ALL_SCOPES

    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    bad = [s for s in wanted if s not in ALL_SCOPES]
    if bad or not wanted:
        typer.echo(
            f"unknown scope(s) {', '.join(bad) or '(none)'}; use {', '.join(ALL_SCOPES)}", err=True
        )
        raise typer.Exit(2)
    settings = _settings()

    async def create() -> str:
        from runyard.db.engine import Database, migrate
        from runyard.store.orgs import create_key, ensure_org

        migrate(settings.db_url)
        db = Database(settings.db_url)
        try:
            async with db.write() as s:
                o = await ensure_org(s, org)
                raw, _ = await create_key(s, o.id, wanted)
            return raw
        finally:
            await db.dispose()

    typer.echo(asyncio.run(create()))


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

    from runyard.follow import follow_run

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
