"""``runyard dev``: the Temporal dev server, the worker and the API, each its own process,
state in the data dir; Ctrl-C stops all of them.

The worker (``python -m cli.dev worker``) and the API (``runyard api``) are child processes
with the settings of this command passed in their environment, so stopping them never
depends on what is in flight inside them: Ctrl-C asks each to stop (SIGTERM: the worker
gives work in flight 2 s, leaves the rest to Temporal's retries and releases its
sandboxes' processes, cgroups and disk mounts; the API ends its event streams at once),
then the Temporal dev server; whatever still runs at its deadline is killed. A second
Ctrl-C kills everything at once; either way dev then releases what is left of its data
dir's sandboxes (a killed worker could not), as it does at start. Its own messages never
stop the stopping, even when the terminal's reader is gone (``| tee``, Ctrl-C ends tee too).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import typer
from pydantic import SecretStr

from runyard.devserver import stop_with_parent
from runyard.settings import Settings

# Longer than the idle timeout of clients and load balancers (60 s is common), so the
# server never closes a kept-alive connection the other side is about to reuse.
KEEP_ALIVE_SECONDS = 75
# How long the API waits for open requests (event streams) at shutdown before closing them.
GRACEFUL_SHUTDOWN_SECONDS = 3
# After Ctrl-C the worker and the API get STOP_SECONDS to stop (they need about 3); the
# Temporal dev server, stopped last because
# the worker's shutdown talks to it, gets what is left of KILL_AT_SECONDS. Whatever still
# runs then is killed, so everything is gone within the 10 s that Ctrl-C promises.
STOP_SECONDS = 6.5
# How long the worker of `runyard dev` lets work in flight finish after Ctrl-C.
WORKER_GRACE_SECONDS = 2.0
KILL_AT_SECONDS = 8.5


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that make ``Settings()`` in a child equal ``settings``.

    A secret (``SecretStr``) passes its value: ``str()`` of one is ``**********``."""
    env: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, Path):
            text = str(value.resolve())
        else:
            text = str(value)
        alias = info.validation_alias
        choices = getattr(alias, "choices", None)
        names = [str(c) for c in choices] if choices else [f"RUNYARD_{name.upper()}"]
        for env_name in names:
            env[env_name] = text
    return env


def _bin(name: str) -> str:
    """The full path of a command installed beside this Python, else its bare name."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def serve_dev(
    *,
    port: int,
    temporal_port: int,
    ui_port: int,
    data_dir: Path,
    host: str,
    settings: Callable[..., Settings],
) -> None:
    from cli.dev_codec import dev_codec
    from cli.dev_ports import check_ports, dev_ports
    from runyard.datadir import private_data_dir
    from runyard.devserver import DevServerConfig, start_dev_server, wait_for_port

    external = os.environ.get("TEMPORAL_ADDRESS")
    temporal_log = data_dir.resolve() / "temporal.log"
    # Every port it binds is checked before anything starts (or is announced).
    ip = DevServerConfig.load().ip
    fixed = None if external else (ip, temporal_port, ui_port)
    check_ports(dev_ports(settings(), host=host, port=port, temporal=fixed), temporal_log)
    sandboxes_dir = settings().sandboxes_dir
    # Local development reaches callbacks on this machine, unless the operator said no.
    private = None if "RUNYARD_ALLOW_PRIVATE_CALLBACKS" in os.environ else True
    local_repos = None if "RUNYARD_ALLOW_LOCAL_REPOS" in os.environ else True
    # SIGTERM (a service manager, `kill`) stops everything as Ctrl-C does. SIGINT is set
    # too: a shell starts a background job (`runyard dev &`) with it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    # A payload key generated into the data dir unless one is configured; the UI decodes
    # through the API's codec server (cli/dev_codec.py).
    codec = dev_codec(settings(), data_dir, host=host, port=port, ui_ip=ip, ui_port=ui_port)
    temporal: subprocess.Popen[bytes] | None = None
    children: list[subprocess.Popen[bytes]] = []
    code = 0
    try:
        address = None
        if not external:
            cfg = DevServerConfig.load()
            cfg.port, cfg.ui_port = temporal_port, ui_port
            cfg.ui_codec_endpoint = codec.endpoint
            address = cfg.address
            private_data_dir(data_dir)  # the dev server's database and log: 0600
            temporal = start_dev_server(cfg, data_dir)
            try:
                wait_for_port(cfg.ip, cfg.port, timeout=60, proc=temporal)
            except (RuntimeError, TimeoutError) as exc:
                _say(f"Temporal dev server did not start: {exc}; see {temporal_log}")
                _stop_all([], temporal)
                raise typer.Exit(1) from None
        s = settings(
            temporal_address=address,
            allow_private_callbacks=private,
            allow_local_repos=local_repos,
            **codec.overrides,
        )
        env = {**os.environ, **settings_env(s)}
        # A previous dev killed outright left its sandboxes' processes, cgroups and mounts.
        _release_sandboxes(sandboxes_dir)
        children += [
            _spawn([sys.executable, "-m", "cli.dev", "worker"], env),
            _spawn([sys.executable, "-m", "cli", "api", "--host", host, "--port", str(port)], env),
        ]
        _banner(s, host, port, ui_port if temporal is not None else None)
        _say_codec(codec.endpoint, codec.keys_file)
        while code == 0:
            for child in children:
                if child.poll() is not None:
                    name = _name(child, children)
                    _say(f"the {name} exited with {child.returncode}; stopping")
                    code = 1
            if temporal is not None and temporal.poll() is not None:
                _say(
                    f"the Temporal dev server exited with {temporal.returncode}; stopping "
                    f"(its log: {temporal_log})"
                )
                code = 1
            time.sleep(0.2)
    except KeyboardInterrupt:
        _say("\nstopping… (Ctrl-C again stops at once)")
    _stop_all(children, temporal)
    if all(child.poll() is not None for child in children):
        # The worker released its sandboxes unless it was killed (a second Ctrl-C, or
        # late): what is left of them goes now, or it stays frozen under pid 1.
        _release_sandboxes(sandboxes_dir)
    raise typer.Exit(code)


def _release_sandboxes(sandboxes_dir: Path) -> None:
    """Release what is left of this data dir's sandboxes (``release_leftovers``): only
    dev may, with no worker of its own running, since it owns its data dir (its port
    check refuses a second dev). Quick, so a Ctrl-C during it waits for its end."""
    from runyard.sandbox.release import release_leftovers

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        release_leftovers(sandboxes_dir)
    finally:
        signal.signal(signal.SIGINT, previous)


def _say(text: str) -> None:
    """A message on standard error that never stops the stopping: piped through ``tee``,
    Ctrl-C ends the reader too, and a write then fails (BrokenPipeError). The write
    raised out of the handler before the children were stopped, leaving the worker
    behind for half a minute."""
    with contextlib.suppress(OSError, ValueError):
        typer.echo(text, err=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _name(proc: subprocess.Popen[bytes], children: list[subprocess.Popen[bytes]]) -> str:
    return "worker" if proc is children[0] else "API"


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A session of its own: the terminal's Ctrl-C reaches only `runyard dev`, which then
    # stops each child in order; however `runyard dev` ends (even SIGKILL), they get SIGTERM.
    # The operator's umask, not this process's private one: the worker and the API make
    # themselves private at start, and remember the operator's for what they write
    # outside the data dir (runyard/datadir.py).
    from runyard.datadir import operator_umask

    return subprocess.Popen(
        argv,
        env=env,
        start_new_session=True,
        preexec_fn=stop_with_parent,
        umask=operator_umask(),
    )


def _banner(s: Settings, host: str, port: int, ui_port: int | None) -> None:
    typer.echo(f"Runyard API:   http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    if ui_port is not None:
        typer.echo(f"Temporal UI:   http://127.0.0.1:{ui_port}")
    typer.echo(f"Temporal:      {s.temporal_address}   data: {s.data_dir.resolve()}")
    api_metrics = f"{s.metrics_host}:{s.metrics_port}" if s.metrics_port else f"{host}:{port}"
    worker_metrics = (
        f", worker http://{s.metrics_host}:{s.worker_metrics_port}/metrics"
        if s.worker_metrics_port
        else " (worker: set RUNYARD_WORKER_METRICS_PORT)"
    )
    typer.echo(f"Metrics:       http://{api_metrics}/metrics{worker_metrics}")
    # `keys create` must write to the store this API reads: the same data dir.
    same = "" if s.data_dir == Path(".runyard") else f"RUNYARD_DATA_DIR={s.data_dir.resolve()} "
    typer.echo(f"Create a key:  {same}{_bin('runyard')} keys create --org demo")
    typer.echo(f"Temporal CLI:  {_bin('temporal')} --address {s.temporal_address}")
    # The other commands read the same settings: say which ones this stack needs.
    env = {
        "RUNYARD_API_URL": f"http://{host}:{port}",
        "TEMPORAL_ADDRESS": s.temporal_address,
        "RUNYARD_DATA_DIR": str(s.data_dir.resolve()),
    }
    from runyard.client import DEFAULT_API_URL

    fields = Settings.model_fields
    defaults = {
        "RUNYARD_API_URL": DEFAULT_API_URL,
        "TEMPORAL_ADDRESS": fields["temporal_address"].default,
        "RUNYARD_DATA_DIR": str(Path(fields["data_dir"].default).resolve()),
    }
    needed = " ".join(f"{k}={v}" for k, v in env.items() if v != defaults[k])
    typer.echo(f"Status:        {needed + ' ' if needed else ''}{_bin('runyard')} status")
    typer.echo("Ctrl-C stops everything.")


def _say_codec(endpoint: str, keys_file: Path | None) -> None:
    typer.echo(f"Codec server:  {endpoint}  (workflow payloads are encrypted)")
    if keys_file is not None:
        typer.echo(f"Payload key:   {keys_file}  (RUNYARD_PAYLOAD_KEYS=$(cat {keys_file}))")


def _signal_all(procs: list[subprocess.Popen[bytes]], sig: signal.Signals) -> None:
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)


def _wait_all(procs: list[subprocess.Popen[bytes]], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(p.poll() is None for p in procs):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _stop_all(
    children: list[subprocess.Popen[bytes]], temporal: subprocess.Popen[bytes] | None
) -> None:
    """SIGTERM the worker and the API, then the Temporal dev server; SIGKILL whatever is
    left at its deadline, and everything at a second Ctrl-C."""
    everything = [*children, *([temporal] if temporal is not None else [])]
    started = time.monotonic()
    try:
        _signal_all(children, signal.SIGTERM)
        if not _wait_all(children, STOP_SECONDS):
            late = " and ".join(_name(p, children) for p in children if p.poll() is None)
            _say(f"the {late} did not stop in {STOP_SECONDS:.0f} s: killed")
            _signal_all(children, signal.SIGKILL)
            _wait_all(children, 0.5)
        if temporal is not None:
            _signal_all([temporal], signal.SIGTERM)
            if not _wait_all([temporal], KILL_AT_SECONDS - (time.monotonic() - started)):
                _signal_all([temporal], signal.SIGKILL)
                _wait_all([temporal], 0.5)
    except KeyboardInterrupt:
        _signal_all(everything, signal.SIGKILL)
        _wait_all(everything, 1)
        _say("killed")
        return
    _say(f"stopped in {time.monotonic() - started:.1f} s")


def _worker_main() -> None:
    """The worker of ``runyard dev`` (``python -m cli.dev worker``): ``runyard worker``,
    except that a stop request gives work in flight ``WORKER_GRACE_SECONDS``, then ends the
    process. The worker's own shutdown waits 5 s for activities before it cancels them,
    and the interpreter's finalization then waited on the Temporal core for seconds more:
    past the 10 s Ctrl-C promises on a busy machine. Nothing is lost by the hard end:
    Temporal runs an activity whose worker went away again once a worker is back."""
    from runyard.logging import configure_logging
    from runyard.sandbox.release import release_local_sandboxes
    from worker import run_worker

    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)

    def end_now() -> None:
        try:
            # What run_worker's end would have released: sandbox processes (thawed),
            # cgroups and disk mounts; the sandboxes' files stay for the runs.
            release_local_sandboxes()
            print("worker: stopped; work in flight resumes when a worker is back", file=sys.stderr)
            sys.stderr.flush()
        finally:  # even when standard error is a pipe whose reader is gone (`| tee`)
            os._exit(0)

    async def run() -> None:
        stop = asyncio.Event()

        def on_signal() -> None:
            stop.set()
            threading.Timer(WORKER_GRACE_SECONDS, end_now).start()

        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, on_signal)
        await run_worker(settings, stop=stop)

    code = 0
    try:
        asyncio.run(run())
    except Exception as exc:  # one line; the worker's log says more
        print(f"worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    _worker_main()
