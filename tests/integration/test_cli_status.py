"""``runyard status`` against the session stack, as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from typer.testing import CliRunner

from cli import app as cli
from runyard.devserver import free_port
from tests.conftest import script
from tests.integration.test_cli_client import html_server
from tests.stack import ROOT, Stack


def _status(stack: Stack, *args: str, **env: str) -> tuple[int, str]:
    names = ("RUNYARD_DATA_DIR", "RUNYARD_DATABASE_URL", "TEMPORAL_ADDRESS", "RUNYARD_TASK_QUEUE")
    given = {name: stack.env[name] for name in names} | env
    result = CliRunner().invoke(cli, ["status", *args], env=given)
    return result.exit_code, result.output


async def test_status_shows_a_healthy_stack_and_its_queued_run(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    created = await api.post(
        "/v1/runs", json={"prompt": script({"text": "x"}), "model": "scripted"}
    )
    assert created.status_code == 201
    for _ in range(60):  # the stack's worker may still be starting
        code, out = await asyncio.to_thread(_status, stack, "--api-url", stack.api_url)
        if code == 0:
            break
        await asyncio.sleep(0.5)
    assert code == 0, out
    for name in ("database", "temporal", "worker", "api"):
        assert re.search(rf"^  {name} +up ", out, re.M), out
    queued = re.search(r"^  queued +(\d+)$", out, re.M)
    assert queued is not None and int(queued.group(1)) >= 1, out
    assert re.search(r"oldest queued: run_\w+, \d+s", out), out
    assert re.search(r"pending deliveries: \d+", out), out
    assert len(out.splitlines()) <= 24  # one screen


async def test_status_exits_1_when_a_part_is_down(stack: Stack) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    code, out = await asyncio.to_thread(_status, stack, "--api-url", nobody)
    assert code == 1
    assert re.search(r"^  api +DOWN +down at " + re.escape(nobody), out, re.M), out
    assert re.search(r"^  database +up ", out, re.M), out

    # A task queue no worker polls: the worker is down, Temporal is not.
    code, out = await asyncio.to_thread(
        _status, stack, "--api-url", stack.api_url, RUNYARD_TASK_QUEUE="nobody-polls-this"
    )
    assert code == 1
    assert re.search(r"^  worker +DOWN +none polling task queue 'nobody-polls-this'", out, re.M)
    assert re.search(r"^  temporal +up ", out, re.M), out

    # Temporal away: said in a few words, and the worker cannot be known.
    gone = f"127.0.0.1:{free_port()}"
    code, out = await asyncio.to_thread(
        _status, stack, "--api-url", stack.api_url, TEMPORAL_ADDRESS=gone
    )
    assert code == 1
    assert re.search(rf"^  temporal +DOWN +down at {gone} \(connection refused\)$", out, re.M), out
    assert re.search(r"^  worker +DOWN +unknown: Temporal is down$", out, re.M), out


async def test_status_says_a_server_that_is_not_the_api_is_down(stack: Stack) -> None:
    """Another server answering 200 at /healthz (the Temporal UI's port) is not the API."""
    with html_server() as other:
        code, out = await asyncio.to_thread(_status, stack, "--api-url", other)
    assert code == 1, out
    assert re.search(r"^  api +DOWN +not a Runyard API: GET /healthz answered HTTP 200", out, re.M)
    assert f"is {other} the Runyard API?" in out, out
    # The Temporal UI answers JSON, just not Runyard's health document: said so, not
    # "with application/json, not JSON".
    with _json_server() as other:
        code, out = await asyncio.to_thread(_status, stack, "--api-url", other)
    assert code == 1, out
    assert "answered HTTP 200 with JSON that is not Runyard's health document" in out, out
    assert "not JSON" not in out, out


class _Json(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status":"OK"}'  # what the Temporal UI's /healthz answers
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _json_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Json)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_worker_of_another_store_on_the_same_task_queue_is_refused(
    stack: Stack, tmp_path: Path
) -> None:
    """A second ``runyard worker`` with its own data dir (its own store) on the stack's
    Temporal and task queue took half of the runs (RUN_NOT_FOUND): it refuses to start,
    in one line naming the cause and the fix."""
    other = tmp_path / "other"
    env = {
        **os.environ,
        **stack.env,
        "RUNYARD_DATA_DIR": str(other),
        "RUNYARD_DATABASE_URL": f"sqlite:///{other / 'runyard.db'}",
    }
    try:
        got = subprocess.run(
            [sys.executable, "-m", "cli", "worker"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("the worker of another store started") from exc
    assert got.returncode == 2, got.stderr
    assert "another store" in got.stderr and "RUNYARD_TASK_QUEUE" in got.stderr, got.stderr
    assert "Traceback" not in got.stderr, got.stderr
