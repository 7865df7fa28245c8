"""``runyard dev``: the Temporal dev server, the worker and the API in one foreground
process, state in the data dir. Ctrl-C stops all of them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import typer

from runyard.settings import Settings

# Longer than the idle timeout of clients and load balancers (60 s is common), so the
# server never closes a kept-alive connection the other side is about to reuse.
KEEP_ALIVE_SECONDS = 75


def serve_dev(
    *,
    port: int,
    temporal_port: int,
    ui_port: int,
    data_dir: Path,
    host: str,
    settings: Callable[..., Settings],
) -> None:
    from runyard.devserver import DevServerConfig, start_dev_server, wait_for_port
    from runyard.logging import configure_logging

    # Local development reaches callbacks and repositories on this machine, unless the
    # operator said no.
    private = None if "RUNYARD_ALLOW_PRIVATE_CALLBACKS" in os.environ else True
    local_repos = None if "RUNYARD_ALLOW_LOCAL_REPOS" in os.environ else True
    external = os.environ.get("TEMPORAL_ADDRESS")
    proc: subprocess.Popen[bytes] | None = None
    address = None
    if not external:
        cfg = DevServerConfig.load()
        cfg.port, cfg.ui_port = temporal_port, ui_port
        address = cfg.address
        data_dir.mkdir(parents=True, exist_ok=True)
        proc = start_dev_server(cfg, data_dir)
        try:
            wait_for_port(cfg.ip, cfg.port, timeout=60, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            typer.echo(
                f"Temporal dev server did not start: {exc}; see {data_dir / 'temporal.log'}",
                err=True,
            )
            _stop(proc)
            raise typer.Exit(1) from exc
    s = settings(
        temporal_address=address, allow_private_callbacks=private, allow_local_repos=local_repos
    )
    configure_logging(s.log_level, json=s.log_json)
    typer.echo(f"Runyard API:   http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    if proc is not None:
        typer.echo(f"Temporal UI:   http://127.0.0.1:{ui_port}")
    typer.echo(f"Temporal:      {s.temporal_address}   data: {s.data_dir.resolve()}")
    typer.echo("Create a key:  runyard keys create --org demo   (Ctrl-C stops everything)")
    try:
        asyncio.run(_serve_all(s, host, port))
    except KeyboardInterrupt:
        pass
    finally:
        if proc is not None:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


async def _serve_all(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from api.app import create_app
    from worker import run_worker

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=host,
            port=port,
            log_level="warning",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop=stop))
    try:
        await server.serve()  # returns on Ctrl-C / SIGTERM
    finally:
        stop.set()
        await worker
