"""``runyard dev``: Ctrl-C with a run in flight stops every process it started within 10 s."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from runyard.devserver import free_port
from runyard.sandbox.disk import unmount_all
from tests.conftest import script
from tests.stack import ROOT, release_sandboxes


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped


def test_ctrl_c_stops_everything_within_10_s_with_a_run_mid_turn(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RUNYARD_", "TEMPORAL_"))},
        "RUNYARD_DATA_DIR": str(tmp_path / "data"),
    }
    argv = [sys.executable, "-m", "cli", "dev", "--port", str(port)]
    argv += ["--data-dir", str(tmp_path / "data")]
    argv += ["--temporal-port", str(free_port()), "--ui-port", str(free_port())]
    log = (tmp_path / "dev.log").open("w+")
    dev = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert dev.poll() is None, (tmp_path / "dev.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "runyard dev never became healthy"
            time.sleep(0.2)
        key = subprocess.run(
            [sys.executable, "-m", "cli", "keys", "create", "--org", "dev"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        auth = {"Authorization": f"Bearer {key}"}
        body = {"prompt": script({"sleep": 120}, {"text": "never"}), "model": "scripted"}
        created = httpx.post(
            f"{url}/v1/runs", json={**body, "start": True}, headers=auth, timeout=60
        )
        assert created.status_code == 201, created.text
        run = created.json()
        deadline = time.monotonic() + 30
        while (
            httpx.get(f"{url}/v1/runs/{run['id']}", headers=auth, timeout=30).json()["status"]
            != "running"
        ):
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.1)
        time.sleep(1)  # the model turn (a 120 s sleep) is in flight
        started = descendants(dev.pid)
        assert len(started) >= 3, started  # Temporal, the worker, the API
        os.killpg(dev.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
        t0 = time.monotonic()
        while alive(dev.pid) or any(alive(p) for p in started):
            assert time.monotonic() - t0 < 10, [p for p in started if alive(p)]
            time.sleep(0.05)
        dev.wait(1)
        log.seek(0)
        output = log.read()
        assert "Traceback" not in output, output
        assert "stopped" in output and str(Path(sys.executable).parent / "runyard") in output
    finally:
        leftover = descendants(dev.pid)  # before dev is gone and they are orphans
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGKILL)
        for pid in leftover:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # The unfinished run's sandbox stays for a restarted dev (its disk mounted): not
        # for the next test.
        release_sandboxes(tmp_path / "data" / "sandboxes")
        unmount_all(tmp_path / "data" / "sandboxes")


def test_a_busy_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    """A port another process holds: named with the flag that moves it and the log file,
    before the ready banner or any process (it used to print the banner, then exit with
    "the Temporal dev server exited")."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNYARD_", "TEMPORAL_"))}
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        for flag in ("--port", "--temporal-port", "--ui-port"):
            ports = {
                "--port": free_port(),
                "--temporal-port": free_port(),
                "--ui-port": free_port(),
            }
            ports[flag] = busy
            argv = [sys.executable, "-m", "cli", "dev", "--data-dir", str(data)]
            for name, number in ports.items():
                argv += [name, str(number)]
            done = subprocess.run(
                argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 2, done
            assert f"port {busy} on 127.0.0.1" in done.stderr and "in use" in done.stderr, done
            assert f"pick another with {flag}" in done.stderr, done.stderr
            assert str(data.resolve() / "temporal.log") in done.stderr, done.stderr
            assert "Runyard API" not in done.stdout + done.stderr  # no banner
            assert not data.exists()  # nothing started
