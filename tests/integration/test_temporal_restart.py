"""The Temporal dev server (and its SQLite file) stopped and started again mid-run.

This test has a dev server and a Runyard stack of its own, so stopping that server
disturbs no other test. The server's history lives in its SQLite file; the runs must
carry on from it once the server is back, with their event logs still dense.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from runyard.db.engine import Database
from runyard.devserver import DevServerConfig, free_port, start_dev_server, wait_for_port
from tests.conftest import TERMINAL, Keys, async_db_url, launch_stack, script, stack_env, wait_for
from tests.fakes.anthropic_server import FakeAnthropic
from tests.integration.counting_runs import assert_each_step_ran_once, start_counting_runs
from tests.integration.test_events import full_log
from tests.stack import Stack


class RestartableServer:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.cfg = DevServerConfig.load()
        self.cfg.port, self.cfg.headless, self.cfg.log_level = free_port(), True, "error"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start_dev_server(self.cfg, self.data)
        wait_for_port(self.cfg.ip, self.cfg.port, timeout=60, proc=self.proc)

    def stop(self) -> None:
        """SIGTERM, as an operator's restart would; SIGKILL if it does not go."""
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RestartableServer]:
    server = RestartableServer(tmp_path / "temporal")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def own_stack(
    tmp_path: Path, own_server: RestartableServer, fake_anthropic: FakeAnthropic
) -> AsyncIterator[tuple[Stack, httpx.AsyncClient]]:
    data = tmp_path / "runyard"
    data.mkdir()
    env = stack_env(data, own_server.cfg.address, fake_anthropic.base_url)
    stack = launch_stack(data, env)
    db = Database(async_db_url(env))
    key = await Keys(db).make("org-" + secrets.token_hex(4))
    await db.dispose()
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        yield stack, client
    stack.stop()


async def test_runs_complete_across_a_temporal_restart(
    own_server: RestartableServer, own_stack: tuple[Stack, httpx.AsyncClient]
) -> None:
    stack, api = own_stack
    ids = await start_counting_runs(api, runs=3, steps=6, sleep=0.2)

    # Stop the server once every run is under way, and keep it down a while.
    for _ in range(200):
        logs = [await full_log(api, run_id) for run_id in ids]
        if all(any(e["type"] == "tool.result" for e in log) for log in logs):
            break
        await asyncio.sleep(0.05)
    own_server.stop()
    for run_id in ids:  # the store answers without Temporal; every run is mid-way
        while_down = await api.get(f"/v1/runs/{run_id}")
        assert while_down.status_code == 200 and while_down.json()["status"] == "running"
    refused = await api.post(
        "/v1/runs", json={"prompt": script({"text": "x"}), "model": "scripted", "start": True}
    )
    assert refused.status_code == 502, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "RUN_ORCHESTRATOR_ERROR"
    assert (await api.get("/v1/runs")).json()["pagination"]["total"] == len(ids)  # none half-made
    await asyncio.sleep(1)
    own_server.start()

    await assert_each_step_ran_once(api, stack, ids, steps=6)
    # A new run after the restart goes through as usual.
    resp = await api.post(
        "/v1/runs", json={"prompt": script({"text": "after"}), "model": "scripted", "start": True}
    )
    assert resp.status_code == 201, resp.text
    assert (await wait_for(api, resp.json()["id"], TERMINAL, timeout=60))["status"] == "completed"
