"""A worker killed with SIGKILL in the middle of a run: a new worker finishes it."""

from __future__ import annotations

import asyncio

import httpx

from runyard.db.engine import Database
from tests.conftest import poll_until, script, wait_for
from tests.integration.test_run_lifecycle import assert_dense_log, events_of
from tests.stack import Stack


async def test_worker_sigkill_mid_run(
    api: httpx.AsyncClient, stack: Stack, stack_db: Database
) -> None:
    steps = [
        {"tool": "bash", "input": {"command": f"sleep 0.4; echo step-{i} >> log.txt"}}
        for i in range(5)
    ]
    steps.append({"tool": "bash", "input": {"command": "cat log.txt"}})
    run = (
        await api.post(
            "/v1/runs",
            json={
                "prompt": script(*steps, {"text": "five steps"}),
                "model": "scripted",
                "start": True,
            },
        )
    ).json()

    async def two_results() -> bool:
        events = await events_of(stack_db, run["id"])
        return sum(e.type == "tool.result" for e in events) >= 2

    await poll_until(two_results, "two tool results before the kill")
    stack.kill_worker(stack.workers[0])
    assert (await api.get(f"/v1/runs/{run['id']}")).json()["status"] == "running"
    await asyncio.sleep(1)
    stack.start_worker()
    done = await wait_for(api, run["id"], {"completed", "failed", "cancelled"}, timeout=60)
    assert done["status"] == "completed", done
    assert done["outputs"] == [{"type": "text", "text": "five steps"}]
    events = await events_of(stack_db, run["id"])
    assert_dense_log(events)
    calls = [e.data["toolCallId"] for e in events if e.type == "tool.call"]
    results = [e.data["toolCallId"] for e in events if e.type == "tool.result"]
    assert calls == results and len(set(calls)) == 6  # every call once, every result once
    final = next(e for e in events if e.type == "tool.result" and e.data["toolCallId"] == calls[-1])
    for i in range(5):  # every step ran (a step cut off by the kill runs again)
        assert f"step-{i}" in final.data["output"]
