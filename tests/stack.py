"""Real Runyard processes for integration tests: the worker and the API as subprocesses,
started with the same environment a deployment would give them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from runyard.devserver import free_port, wait_for_port
from runyard.sandbox.cgroups import Cgroup
from runyard.sandbox.disk import unmount_all

ROOT = Path(__file__).resolve().parent.parent


class Stack:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = {**os.environ, **env}
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.api_port = free_port()
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.temporal_pid: int | None = None  # when the stack's owner started the server
        self._n = 0
        self._data_dirs = {Path(self.env.get("RUNYARD_DATA_DIR", ".runyard"))}

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _spawn(
        self, argv: list[str], name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        self._n += 1
        log = (self.logs / f"{name}-{self._n}.log").open("wb")
        return subprocess.Popen(
            argv,
            env={**self.env, **(env or {})},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        """A worker; ``env`` adds to the stack's (e.g. another host's data dir and name)."""
        proc = self._spawn([sys.executable, "-m", "cli", "worker"], "worker", env)
        self.workers.append(proc)
        if "RUNYARD_DATA_DIR" in env:
            self._data_dirs.add(Path(env["RUNYARD_DATA_DIR"]))
        return proc

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL: the worker gets no chance to finish anything."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        self.workers.remove(proc)

    def start_api(self) -> None:
        self.spawn_api()
        self.wait_for_api()

    def spawn_api(self) -> None:
        """Start the API process without waiting for it (``wait_for_api``): two replicas
        start side by side."""
        self.api = self._spawn(
            [sys.executable, "-m", "cli", "api", "--port", str(self.api_port)], "api"
        )

    def wait_for_api(self) -> None:
        assert self.api is not None
        wait_for_port("127.0.0.1", self.api_port, timeout=60, proc=self.api)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("the API never became healthy")

    def kill_api(self) -> None:
        assert self.api is not None
        os.killpg(self.api.pid, signal.SIGKILL)
        self.api.wait(10)
        self.api = None

    def stop(self) -> None:
        for proc in [*self.workers, *([self.api] if self.api else [])]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.workers, *([self.api] if self.api else [])]:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        # Sandboxes of runs that never ended keep their processes and disks: release them.
        for data_dir in self._data_dirs:
            release_sandboxes(data_dir / "sandboxes")
            unmount_all(data_dir / "sandboxes")


def release_sandboxes(root: Path) -> None:
    """Kill what is left in the sandboxes of runs that never ended, for a worker killed
    outright (one that stops releases its own: runyard/sandbox/release.py)."""
    if not root.is_dir():
        return
    for sandbox in root.iterdir():
        if sandbox.name.startswith("sbx_"):
            group = Cgroup.open(sandbox.name, memory_bytes=1 << 30, pids_max=512)
            if group is not None:
                group.remove()
