"""``multitaskStrategy`` over HTTP: 30 concurrent posts to one thread give exactly one
open run under ``reject`` and one line under ``enqueue``, whose runs start one after
another as each ends; ``interrupt`` stops the running run at its turn boundary and the new
run continues its conversation; ``rollback`` does not."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import httpx

from runyard.client import AsyncRunyard
from tests.conftest import TERMINAL, poll_until, script, wait_for
from tests.fakes.anthropic_server import FakeAnthropic, Reply
from tests.integration.git_support import git

N = 30


async def thread_of(api: httpx.AsyncClient) -> str:
    return str((await api.post("/v1/threads", json={})).json()["id"])


async def post_run(api: httpx.AsyncClient, thread: str, **body: Any) -> httpx.Response:
    return await api.post(f"/v1/threads/{thread}/runs", json={"model": "scripted", **body})


async def test_30_concurrent_posts_reject_and_enqueue(api: httpx.AsyncClient) -> None:
    hold = script({"sleep": 3, "text": "held"})
    thread = await thread_of(api)
    answers = await asyncio.gather(*(post_run(api, thread, prompt=hold) for _ in range(N)))
    won = [r for r in answers if r.status_code == 201]
    lost = [r for r in answers if r.status_code == 409]
    assert len(won) == 1 and len(lost) == N - 1, [r.text for r in answers if r not in won + lost]
    winner = won[0].json()["runId"]
    assert {r.json()["type"] for r in lost} == {"CONFLICT"}
    assert {r.json()["activeRunId"] for r in lost} == {winner}
    await api.post(f"/v1/runs/{winner}/cancel")

    thread = await thread_of(api)
    quick = script({"text": "next"})
    bodies = [{"prompt": quick, "multitaskStrategy": "enqueue"} for _ in range(N)]
    answers = await asyncio.gather(*(post_run(api, thread, **b) for b in bodies))
    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    created = [r.json() for r in answers]
    first = [c for c in created if "queuedBehind" not in c]
    assert len(first) == 1  # the thread was free for exactly one of them
    # The others form one line behind it: every run is behind exactly one other.
    behind = {c["queuedBehind"]: c["runId"] for c in created if "queuedBehind" in c}
    assert len(behind) == N - 1 and all(c["status"] == "queued" for c in created if c != first[0])
    line = [first[0]["runId"]]
    while line[-1] in behind:
        line.append(behind[line[-1]])
    assert len(line) == N

    # Each starts when the one before ends: the first ones in order, then stop the rest.
    for before, after in itertools.pairwise(line[:3]):
        done = await wait_for(api, before, TERMINAL)
        assert done["status"] == "completed"
        started = await wait_for(api, after, {"pending", "running", *TERMINAL})
        assert started["startedAt"] >= done["completedAt"]
    for run_id in reversed(line[2:]):
        await api.post(f"/v1/runs/{run_id}/cancel")
    listed = (await api.get("/v1/runs", params={"threadId": thread, "limit": 100})).json()
    assert sum(r["status"] in ("pending", "running") for r in listed["data"]) <= 1


async def test_interrupt_continues_and_rollback_forgets(
    api: httpx.AsyncClient, fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    fake_anthropic.reset()
    look = {"id": "toolu_look", "name": "bash", "input": {"command": "cat carried.txt"}}
    fake_anthropic.queue(
        Reply(blocks=[{"tool_use": look}]), Reply(blocks=[{"text": "carrying on"}])
    )
    thread = await thread_of(api)
    repo = tmp_path / "repo"
    git("init", "-q", "-b", "main", str(repo))
    git("commit", "-q", "--allow-empty", "-m", "base", cwd=repo)
    busy = script(
        {"tool": "bash", "input": {"command": "echo carried-over > carried.txt"}},
        {"sleep": 3, "tool": "bash", "input": {"command": "echo never"}},
        {"text": "x"},
    )
    first = (await post_run(api, thread, prompt=busy, repo=str(repo))).json()["runId"]
    # Its first turn's boundary passed (the file in a checkpoint): the interrupt comes
    # while the model's second answer (3 s) is on its way.
    await poll_until(lambda: _has_checkpoint(api, first), "the first run's file written")
    interrupt = {"multitaskStrategy": "interrupt", "repo": str(repo)}
    resp = await post_run(api, thread, prompt="and now?", model="sonnet", **interrupt)
    assert resp.status_code == 201, resp.text
    second = resp.json()
    assert (second["status"], second["queuedBehind"]) == ("queued", first)
    assert second["supersedes"] == [first]
    old = await wait_for(api, first, TERMINAL)
    assert old["status"] == "cancelled"
    assert old["error"]["code"] == "RUN_SUPERSEDED"
    assert old["error"]["supersededBy"] == second["runId"]
    log = (await api.get(f"/v1/runs/{first}/logs")).text
    assert '"isError":true' in log.replace(" ", "") and "echo never" in log  # not run
    new = await wait_for(api, second["runId"], TERMINAL)
    assert new["status"] == "completed"
    sent = fake_anthropic.requests[-1]["messages"]
    flat = str(sent)
    assert "echo never" in flat and "and now?" in flat  # the interrupted run's conversation
    assert "interrupted by a newer run" in flat  # its unfinished call's error result
    # Its workspace: the file its shell wrote, read back by the new run's own call.
    (looked,) = [
        b
        for m in sent
        if isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result" and b.get("tool_use_id") == "toolu_look"
    ]
    assert "carried-over" in str(looked["content"]) and not looked.get("is_error")

    fake_anthropic.reset()
    fake_anthropic.queue(Reply(blocks=[{"text": "fresh"}]))
    third_prompt = script({"sleep": 2, "tool": "bash", "input": {"command": "echo rolled-back"}})
    key = api.headers["Authorization"].removeprefix("Bearer ")
    async with AsyncRunyard(str(api.base_url), key) as client:  # the Python client
        third = (await client.create_thread_run(thread, third_prompt, model="scripted")).run_id
    await wait_for(api, third, {"running"})
    rolled = await post_run(
        api, thread, prompt="start over", model="sonnet", multitaskStrategy="rollback"
    )
    assert rolled.status_code == 201, rolled.text
    await wait_for(api, rolled.json()["runId"], TERMINAL)
    assert (await wait_for(api, third, TERMINAL))["error"]["code"] == "RUN_SUPERSEDED"
    await poll_until(lambda: _has_requests(fake_anthropic), "the rollback run's model call")
    sent_after = str(fake_anthropic.requests[-1]["messages"])
    assert "start over" in sent_after and "and now?" in sent_after  # the completed runs
    assert "rolled-back" not in sent_after  # not the run it rolled back


async def _has_checkpoint(api: httpx.AsyncClient, run_id: str) -> bool:
    return bool((await api.get(f"/v1/runs/{run_id}/checkpoints")).json()["data"])


async def _has_requests(fake: FakeAnthropic) -> bool:
    return bool(fake.requests)
