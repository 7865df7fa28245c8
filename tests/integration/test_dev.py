"""``runyard dev``: Ctrl-C with a run in flight stops every process it started within 10 s."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pexpect
from google.protobuf import json_format
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from runyard.devserver import free_port
from runyard.encryption import new_key_spec
from runyard.sandbox.disk import unmount_all
from runyard.settings import Settings
from tests.conftest import readable_by_others, script
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


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_ctrl_c_stops_everything_within_10_s_with_a_run_mid_turn(tmp_path: Path) -> None:
    """``runyard dev 2>&1 | tee``, Ctrl-C (SIGINT to the whole foreground group: tee ends
    too, and every later write of dev to the pipe fails): every process is gone within
    10 s (the worker was orphaned for ~30 s, dev's messages raising BrokenPipeError)."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RUNYARD_", "TEMPORAL_"))},
        "RUNYARD_DATA_DIR": str(tmp_path / "data"),
    }
    # A data dir an older version left open to every local user is tightened at start.
    (tmp_path / "data").mkdir(mode=0o755)
    (tmp_path / "data").chmod(0o755)
    (tmp_path / "data" / "temporal.log").write_text("old\n")
    (tmp_path / "data" / "temporal.log").chmod(0o644)
    argv = [sys.executable, "-m", "cli", "dev", "--port", str(port)]
    argv += ["--data-dir", str(tmp_path / "data")]
    temporal_port, ui_port = free_port(), free_port()
    argv += ["--temporal-port", str(temporal_port), "--ui-port", str(ui_port)]
    log = (tmp_path / "dev.log").open("w+")
    piped = f"{shlex.join(argv)} 2>&1 | tee {shlex.quote(str(tmp_path / 'tee.log'))}"
    dev = subprocess.Popen(
        ["bash", "-c", piped],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
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
        _the_ui_decodes_the_encrypted_run(url, temporal_port, ui_port, run["id"], body["prompt"])
        started = descendants(dev.pid)
        assert len(started) >= 3, started  # Temporal, the worker, the API
        # What Ctrl-C in its terminal sends: SIGINT to the whole group. tee ending first
        # (so that dev's next write to the pipe fails) is the order that left the worker.
        tee = next(p for p in started if _cmdline(p).startswith("tee"))
        os.kill(tee, signal.SIGINT)
        while alive(tee):
            time.sleep(0.01)
        os.killpg(dev.pid, signal.SIGINT)
        t0 = time.monotonic()
        while alive(dev.pid) or any(alive(p) for p in started):
            assert time.monotonic() - t0 < 10, [p for p in started if alive(p)]
            time.sleep(0.05)
        dev.wait(1)
        log.seek(0)
        output = log.read()
        assert "Traceback" not in output, output
        assert str(Path(sys.executable).parent / "runyard") in output  # the banner
        # Issue 23, item 8: the store (and its WAL, when a clean close left one), the
        # secret key, the Temporal dev server's database and log are 0600 in a 0700 dir.
        data = tmp_path / "data"
        for name in ("runyard.db", "temporal.db", "temporal.log", "secret_key", "payload_keys"):
            assert (data / name).exists(), sorted(p.name for p in data.iterdir())
        assert readable_by_others(data) == []
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


def _the_ui_decodes_the_encrypted_run(
    url: str, temporal_port: int, ui_port: int, run_id: str, prompt: str
) -> None:
    """dev generated a payload key: the run's history is ciphertext, and the Temporal UI,
    started with the API's codec server as its codec endpoint, decodes it with its own
    request (from its origin, no token: the dev UI has no login)."""
    ui = f"http://127.0.0.1:{ui_port}"
    settings = httpx.get(f"{ui}/api/v1/settings", timeout=10).json()
    assert settings["Codec"]["Endpoint"] == f"{url}/codec", settings["Codec"]

    async def summary() -> Payload:
        client = await Client.connect(f"127.0.0.1:{temporal_port}")
        history = await client.get_workflow_handle(run_id).fetch_history()
        return history.events[0].user_metadata.summary

    sealed = asyncio.run(summary())
    assert sealed.metadata["encoding"] == b"binary/encrypted", sealed.metadata
    got = httpx.post(
        f"{url}/codec/decode",
        json={"payloads": [json_format.MessageToDict(sealed)]},
        headers={"X-Namespace": "default", "Origin": ui},
        timeout=10,
    )
    assert got.status_code == 200, got.text
    assert got.headers["access-control-allow-origin"] == ui
    assert json.loads(base64.b64decode(got.json()["payloads"][0]["data"])) == prompt


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


def _mounts_under(root: Path) -> list[str]:
    here = str(root.resolve())
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines if line.split()[4].startswith(here)]


def _cgroups_of(sandbox_ids: set[str]) -> list[Path]:
    """The sandboxes' cgroup directories (v2, or each v1 hierarchy's)."""
    base = Path("/sys/fs/cgroup")
    found = [base / "runyard" / s for s in sandbox_ids]
    found += [p for s in sandbox_ids for p in base.glob(f"*/runyard/{s}")]
    return [p for p in found if p.is_dir()]


def _frozen(sandbox_id: str) -> bool:
    for group in _cgroups_of({sandbox_id}):
        for name, value in (("cgroup.freeze", "1"), ("freezer.state", "FROZEN")):
            with contextlib.suppress(OSError):
                if (group / name).read_text().strip() == value:
                    return True
    return False


def test_ctrl_c_in_a_terminal_leaves_no_process_mount_or_cgroup(tmp_path: Path) -> None:
    """Ctrl-C in a terminal with clients on event streams, a run waiting for input (its
    sandbox frozen), one mid-turn and one that has just ended; every secret setting set
    (they reach the API and the worker intact, or the API does not start): no traceback,
    every process gone within 10 s, no sandbox process, mount or cgroup left behind; and
    the next start answers the waiting run, which completes."""
    port, data = free_port(), tmp_path / "data"
    secrets_env = {
        f"RUNYARD_{name.upper()}": f"{name}-{os.urandom(16).hex()}"
        for name, info in Settings.model_fields.items()
        if info.annotation is SecretStr or SecretStr in getattr(info.annotation, "__args__", ())
    }
    assert "RUNYARD_SECRET_KEY" in secrets_env
    # Keys in their format (the workflow payloads of both starts are encrypted with them).
    secrets_env["RUNYARD_PAYLOAD_KEYS"] = f"{new_key_spec('k2')},{new_key_spec('k1')}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RUNYARD_", "TEMPORAL_"))},
        "RUNYARD_DATA_DIR": str(data),
        **secrets_env,
    }
    env.pop("NO_COLOR", None)
    argv = ["-m", "cli", "dev", "--port", str(port), "--data-dir", str(data)]
    argv += ["--temporal-port", str(free_port()), "--ui-port", str(free_port())]
    url = f"http://127.0.0.1:{port}"

    transcript = io.StringIO()  # what the terminal shows, both starts

    def start() -> pexpect.spawn[str]:
        child = pexpect.spawn(
            sys.executable, argv, env=env, cwd=str(ROOT), encoding="utf-8", timeout=90
        )
        child.logfile_read = transcript
        child.expect("Ctrl-C stops everything")
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=10).status_code == 200:
                    return child
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or not child.isalive():
                child.kill(signal.SIGINT)  # stop what started (the secrets test: the API)
                child.expect(pexpect.EOF)
                raise AssertionError(f"runyard dev never became healthy:\n{transcript.getvalue()}")
            time.sleep(0.2)

    dev = start()
    assert dev.pid is not None
    procs: set[int] = set()
    sandboxes: set[str] = set()
    try:
        key = subprocess.run(
            [sys.executable, "-m", "cli", "keys", "create", "--org", "dev"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        auth = {"Authorization": f"Bearer {key}"}

        def create(*lines: dict[str, object]) -> str:
            body = {"prompt": script(*lines), "model": "scripted", "start": True}
            got = httpx.post(f"{url}/v1/runs", json=body, headers=auth, timeout=60)
            assert got.status_code == 201, got.text
            return str(got.json()["id"])

        def status(run_id: str) -> str:
            return str(
                httpx.get(f"{url}/v1/runs/{run_id}", headers=auth, timeout=30).json()["status"]
            )

        def wait(run_id: str, wanted: str) -> None:
            deadline = time.monotonic() + 60
            while status(run_id) != wanted:
                assert time.monotonic() < deadline, f"{run_id} never {wanted}"
                time.sleep(0.1)

        waiting = create(
            {"tool": "bash", "input": {"command": "sleep 600 &"}},
            {"ask": "Go on?"},
            {"text": "went on"},
        )
        ended = create({"tool": "bash", "input": {"command": "echo hi"}}, {"text": "done"})
        turning = create({"sleep": 120}, {"text": "never"})  # mid-turn at Ctrl-C
        # A tool call in flight at Ctrl-C: the worker's release cuts it off, and it must
        # run again at the next start (at-least-once), not end as a tool error.
        rerun = "if [ -e .again ]; then echo again; else touch .again; sleep 300; fi"
        calling = create({"tool": "bash", "input": {"command": rerun}}, {"text": "called"})
        sandboxes = {"sbx_" + r.removeprefix("run_") for r in (waiting, ended, calling)}
        wait(waiting, "waiting_for_input")
        wait(ended, "completed")
        # The waiting run's sandbox frozen (the pause follows the status).
        deadline = time.monotonic() + 30
        while not _frozen("sbx_" + waiting.removeprefix("run_")):
            assert time.monotonic() < deadline, "the waiting run's sandbox never froze"
            time.sleep(0.1)
        wait(turning, "running")
        marker = data / "sandboxes" / ("sbx_" + calling.removeprefix("run_")) / "disk"
        deadline = time.monotonic() + 30
        while not (marker / "workspace" / ".again").exists():
            assert time.monotonic() < deadline, "the tool call never started"
            time.sleep(0.1)
        # Clients reading event streams (the API's shutdown cancelled them, with a
        # traceback each).
        opened: list[str] = []

        def read(run_id: str) -> None:
            sse = {**auth, "Accept": "text/event-stream"}
            with contextlib.suppress(httpx.HTTPError):
                with httpx.stream("GET", f"{url}/v1/runs/{run_id}/events", headers=sse) as got:
                    for _ in got.iter_lines():
                        opened.append(run_id)

        readers = [
            threading.Thread(target=read, args=(r,), daemon=True) for r in (waiting, turning)
        ]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + 30
        while set(opened) != {waiting, turning}:
            assert time.monotonic() < deadline, opened
            time.sleep(0.05)
        procs = descendants(dev.pid)
        dev.sendintr()  # Ctrl-C in the terminal
        t0 = time.monotonic()
        while alive(dev.pid) or any(alive(p) for p in procs) or _sandbox_processes(sandboxes):
            assert time.monotonic() - t0 < 10, (
                [p for p in procs if alive(p)],
                _sandbox_processes(sandboxes),
            )
            time.sleep(0.05)
        dev.expect(pexpect.EOF)
        output = transcript.getvalue()
        assert "Traceback" not in output, output
        assert "stopped in" in output, output
        for reader in readers:
            reader.join(5)  # the streams ended with the API
        assert _mounts_under(data) == [], _mounts_under(data)
        assert _cgroups_of(sandboxes) == [], _cgroups_of(sandboxes)
        # The next start takes the waiting run up again.
        dev = start()
        assert dev.pid is not None
        answered = httpx.post(
            f"{url}/v1/runs/{waiting}/input", json={"content": "yes"}, headers=auth, timeout=60
        )
        assert answered.status_code == 200, answered.text
        wait(waiting, "completed")
        wait(calling, "completed")
        logs = httpx.get(f"{url}/v1/runs/{calling}/logs", headers=auth, timeout=30).text
        results = [
            e["data"] for e in map(json.loads, logs.splitlines()) if e["type"] == "tool.result"
        ]
        assert len(results) == 1 and not results[0]["isError"], results
        assert "again" in results[0]["output"], results
        # Ctrl-C twice ("Ctrl-C again stops at once") kills the worker before it can
        # release its sandboxes: dev releases them (a frozen one stayed in state D under
        # pid 1, with its mount and cgroups, across restarts).
        again = create({"tool": "bash", "input": {"command": "sleep 600 &"}}, {"ask": "Again?"})
        frozen = "sbx_" + again.removeprefix("run_")
        wait(again, "waiting_for_input")
        deadline = time.monotonic() + 30
        while not _frozen(frozen):
            assert time.monotonic() < deadline, "the waiting run's sandbox never froze"
            time.sleep(0.1)
        procs = descendants(dev.pid)
        dev.sendintr()
        dev.expect("stopping")
        dev.sendintr()
        dev.expect(pexpect.EOF)
        assert "killed" in transcript.getvalue(), transcript.getvalue()
        t0 = time.monotonic()
        while any(alive(p) for p in procs) or _sandbox_processes({frozen}):
            assert time.monotonic() - t0 < 10, _sandbox_processes({frozen})
            time.sleep(0.05)
        assert _mounts_under(data) == [], _mounts_under(data)
        assert _cgroups_of({frozen}) == [], _cgroups_of({frozen})
        assert (data / "sandboxes" / frozen / "meta.json").exists()  # its files stay
        assert "Traceback" not in transcript.getvalue(), transcript.getvalue()
    finally:
        (tmp_path / "terminal.txt").write_text(transcript.getvalue())
        leftover = (descendants(dev.pid) if dev.pid else set()) | procs
        if dev.isalive():
            dev.kill(signal.SIGKILL)
        for pid in leftover:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        release_sandboxes(data / "sandboxes")
        unmount_all(data / "sandboxes")


def _sandbox_processes(sandbox_ids: set[str]) -> list[str]:
    """Processes still in the sandboxes' cgroups."""
    found: list[str] = []
    for group in _cgroups_of(sandbox_ids):
        with contextlib.suppress(OSError):
            found += (group / "cgroup.procs").read_text().split()
    return found
