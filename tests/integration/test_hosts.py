"""Scale-out on one machine: two worker "hosts" (their own data dirs, sandbox disks and
host names) and two API replicas on one Postgres store and one Temporal server.

A run's tool calls go to the host that provisioned its sandbox (a file written by one
call is read by the next); a host killed mid-run has its runs' sandboxes rebuilt on the
other host (``sandbox.lost``, then ``sandbox.ready``) and every run still ends with a
gapless event log; a stream moved from one API replica to the other with
``Last-Event-ID`` misses nothing and repeats nothing.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard.db.engine import Database, migrate
from runyard.settings import default_host_name
from tests.conftest import Keys, async_db_url, poll_until, script, stack_env, wait_for
from tests.fakes.anthropic_server import FakeAnthropic
from tests.integration.test_events import assert_gapless, full_log
from tests.sse import read_events
from tests.stack import Stack

HOST_LOST_SECONDS = 5


@dataclass
class Host:
    name: str
    data_dir: Path
    worker: subprocess.Popen[bytes]

    def sandboxes(self) -> set[str]:
        root = self.data_dir / "sandboxes"
        return {p.name for p in root.glob("sbx_*")} if root.exists() else set()


class Cluster:
    """API replica ``a`` with host ``a``'s worker, replica ``b`` with host ``b``'s."""

    def __init__(self, env: dict[str, str], data: Path) -> None:
        migrate(async_db_url(env))
        self.env = env
        self.a, self.b = Stack(env, data / "logs-a"), Stack(env, data / "logs-b")
        self.hosts: dict[str, Host] = {}
        for name, stack in (("a", self.a), ("b", self.b)):
            # No RUNYARD_HOST_NAME: two workers of one machine with data dirs of their own
            # get host names of their own by default (they shared the machine's once).
            host_dir = data / f"host-{name}"
            worker = stack.start_worker(RUNYARD_DATA_DIR=str(host_dir))
            self.hosts[name] = Host(default_host_name(host_dir), host_dir, worker)
            stack.spawn_api()
        for stack in (self.a, self.b):  # the replicas start side by side
            stack.wait_for_api()
        assert self.hosts["a"].name != self.hosts["b"].name
        for stack in (self.a, self.b):  # both hosts poll before the first run starts
            wait_for_log(stack.logs, "worker.started")

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()

    async def key(self) -> str:
        db = Database(async_db_url(self.env))
        try:
            return await Keys(db).make("hosts-" + secrets.token_hex(4))
        finally:
            await db.dispose()


def wait_for_log(logs: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in p.read_text(errors="replace") for p in logs.glob("worker-*.log")):
        if time.monotonic() > deadline:
            raise AssertionError(f"no worker in {logs} logged {text!r}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    temporal_server: str,
    fake_anthropic: FakeAnthropic,
    postgres_url: str,
) -> Iterator[Cluster]:
    data = tmp_path_factory.mktemp("hosts")
    env = stack_env(
        data,
        temporal_server,
        fake_anthropic.base_url,
        RUNYARD_DATABASE_URL=postgres_url,
        RUNYARD_HOST_LOST_SECONDS=str(HOST_LOST_SECONDS),
    )
    c = Cluster(env, data)
    yield c
    c.stop()


@pytest.fixture
async def clients(cluster: Cluster) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """One organization's clients of replica a and replica b."""
    headers = {"Authorization": f"Bearer {await cluster.key()}"}
    async with (
        httpx.AsyncClient(base_url=cluster.a.api_url, headers=headers, timeout=30) as a,
        httpx.AsyncClient(base_url=cluster.b.api_url, headers=headers, timeout=30) as b,
    ):
        yield a, b


async def start(api: httpx.AsyncClient, *lines: dict[str, Any]) -> str:
    body = {"prompt": script(*lines), "model": "scripted", "start": True}
    resp = await api.post("/v1/runs", json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def remember_then_recall(token: str, *between: dict[str, Any]) -> list[dict[str, Any]]:
    """A script whose last tool call reads the file its first one wrote."""
    return [
        {"tool": "bash", "input": {"command": f"echo {token} > mine.txt"}},
        *between,
        {"tool": "bash", "input": {"command": "cat mine.txt 2>&1 || true"}},
        {"text": "done"},
    ]


def results(log: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["output"] for e in log if e["type"] == "tool.result"]


async def test_tool_calls_stay_on_the_host_that_holds_the_sandbox(
    cluster: Cluster, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    tokens = [secrets.token_hex(6) for _ in range(20)]
    run_ids = await asyncio.gather(
        *(
            start(clients[i % 2], *remember_then_recall(token, {"sleep": 0.3}))
            for i, token in enumerate(tokens)
        )
    )
    seen_on: dict[str, set[str]] = {"a": set(), "b": set()}
    while True:  # which host provisioned which run, while the sandboxes exist
        for name, host in cluster.hosts.items():
            seen_on[name] |= host.sandboxes()
        bodies = [(await clients[0].get(f"/v1/runs/{r}")).json() for r in run_ids]
        if all(b["status"] in ("completed", "failed", "cancelled") for b in bodies):
            break
        await asyncio.sleep(0.1)
    for run_id, token, body in zip(run_ids, tokens, bodies, strict=True):
        assert body["status"] == "completed", body
        log = await full_log(clients[1], run_id)
        assert_gapless(log)
        assert f"stdout:\n{token}" in results(log)[-1], results(log)
        assert "sandbox.lost" not in {e["type"] for e in log}
    # Both hosts took part (so the calls above really had a host to stay on).
    assert seen_on["a"] and seen_on["b"], seen_on


async def test_a_killed_host_has_its_runs_rebuilt_on_the_other(
    cluster: Cluster, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    tokens = [secrets.token_hex(6) for _ in range(8)]
    run_ids = [
        await start(clients[i % 2], *remember_then_recall(t, {"sleep": 4}))
        for i, t in enumerate(tokens)
    ]
    for run_id in run_ids:  # every run has its sandbox and is in its long model turn
        await wait_for(clients[0], run_id, {"running"}, timeout=60)
    await asyncio.sleep(1)
    # Kill the host holding more of them (SIGKILL of its worker: its process group).
    victim = max(cluster.hosts.values(), key=lambda h: len(h.sandboxes()))
    on_victim = victim.sandboxes()
    assert on_victim
    stack = cluster.a if victim is cluster.hosts["a"] else cluster.b
    stack.kill_worker(victim.worker)
    lost_runs = 0
    for run_id, token in zip(run_ids, tokens, strict=True):
        body = await wait_for(clients[1], run_id, {"completed", "failed"}, timeout=120)
        log = await full_log(clients[1], run_id)
        assert_gapless(log)
        types = [e["type"] for e in log]
        if "sandbox.lost" in types:
            lost_runs += 1
            assert body["status"] == "completed", body
            # A fresh sandbox: the file of the lost one is gone with its host.
            assert "No such file" in results(log)[-1]
            assert types.index("sandbox.lost") < len(types) - 1 - types[::-1].index("sandbox.ready")
        else:
            assert body["status"] == "completed", body
            assert f"stdout:\n{token}" in results(log)[-1], results(log)
    assert lost_runs == len(on_victim), (lost_runs, on_victim)
    # The survivor holds no sandbox of these runs any more: each was destroyed at its end
    # (beside the terminal write, so possibly a moment after it).
    survivor = next(h for h in cluster.hosts.values() if h is not victim)
    ours = {"sbx_" + r.removeprefix("run_") for r in run_ids}
    await poll_until(
        lambda: asyncio.sleep(0, not survivor.sandboxes() & ours),
        "the survivor's sandboxes of these runs destroyed",
        timeout=60,
        every=0.1,
    )


async def test_a_stream_moves_between_replicas_without_gap_or_repeat(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = clients
    run_id = await start(
        a,
        {"tool": "bash", "input": {"command": "echo one"}},
        {"sleep": 0.5, "tool": "bash", "input": {"command": "echo two"}},
        {"sleep": 0.5, "tool": "bash", "input": {"command": "echo three"}},
        {"sleep": 0.5, "text": "done"},
    )
    first = await read_events(a, run_id, stop_after=4)
    await asyncio.sleep(1)  # events are written while no client listens
    rest = await read_events(b, run_id, headers={"Last-Event-ID": str(first[-1]["seq"])})
    joined = first + rest
    assert_gapless(joined)
    assert joined == await full_log(b, run_id)
