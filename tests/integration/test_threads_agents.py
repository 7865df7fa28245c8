"""Threads (a conversation across runs) and agents (instructions, model, template)."""

from __future__ import annotations

import httpx

from tests.conftest import TERMINAL, Keys, script, wait_for
from tests.fakes.anthropic_server import FakeAnthropic, Reply
from tests.stack import Stack


async def test_thread_carries_the_conversation(
    api: httpx.AsyncClient, fake_anthropic: FakeAnthropic
) -> None:
    thread = (await api.post("/v1/threads", json={"metadata": {"topic": "colours"}})).json()
    assert thread["id"].startswith("thr_") and thread["metadata"] == {"topic": "colours"}
    assert (await api.get(f"/v1/threads/{thread['id']}")).json() == thread
    fake_anthropic.reset()
    fake_anthropic.queue(
        Reply(blocks=[{"text": "Blue is calm."}]), Reply(blocks=[{"text": "You asked about blue."}])
    )

    first = await api.post(
        f"/v1/threads/{thread['id']}/runs",
        json={"prompt": "Tell me about blue", "routeId": "sonnet"},
    )
    assert first.status_code == 201 and set(first.json()) == {"runId", "traceId"}
    run1 = first.json()["runId"]
    busy = await api.post(
        f"/v1/threads/{thread['id']}/runs", json={"prompt": "too soon", "model": "sonnet"}
    )
    assert busy.status_code == 409 and busy.json()["type"] == "CONFLICT"
    await wait_for(api, run1, TERMINAL)

    second = await api.post(
        f"/v1/threads/{thread['id']}/runs",
        json={"prompt": "What did I ask?", "model": "sonnet", "personaId": "helper@2"},
    )
    run2 = second.json()["runId"]
    done = await wait_for(api, run2, TERMINAL)
    assert done["threadId"] == thread["id"] and done["personaId"] == "helper@2"
    seen = fake_anthropic.requests[1]["messages"]
    assert [m["role"] for m in seen] == ["user", "assistant", "user"]
    assert seen[0]["content"][0]["text"] == "Tell me about blue"
    assert seen[1]["content"] == [{"type": "text", "text": "Blue is calm."}]
    assert seen[2]["content"][0]["text"] == "What did I ask?"

    listed = (await api.get(f"/v1/threads/{thread['id']}/runs", params={"limit": 5})).json()["data"]
    assert [r["id"] for r in listed] == [run2, run1]
    by_filter = (await api.get("/v1/runs", params={"threadId": thread["id"]})).json()["data"]
    assert {r["id"] for r in by_filter} == {run1, run2}


async def test_thread_errors(api: httpx.AsyncClient, stack: Stack, keys: Keys) -> None:
    assert (await api.get("/v1/threads/thr_nope")).json()["type"] == "THREAD_NOT_FOUND"
    resp = await api.post("/v1/threads/thr_nope/runs", json={"prompt": "x", "model": "scripted"})
    assert resp.status_code == 404 and resp.json()["type"] == "THREAD_NOT_FOUND"
    thread = (await api.post("/v1/threads", json={})).json()
    for body in (
        {"prompt": "x", "model": "scripted", "routeId": "opus"},
        {"prompt": "x", "model": "scripted", "personaId": "no-version"},
        {"prompt": "x", "model": "scripted", "threadId": "thr_other"},
    ):
        resp = await api.post(f"/v1/threads/{thread['id']}/runs", json=body)
        assert resp.status_code == 400 and resp.json()["type"] == "VALIDATION_FAILED", body
    other = await keys.make("thread-thief")
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {other}"}
    ) as c:
        assert (await c.get(f"/v1/threads/{thread['id']}")).status_code == 404
        resp = await c.post(
            "/v1/runs", json={"prompt": "x", "model": "scripted", "threadId": thread["id"]}
        )
        assert resp.status_code == 404 and resp.json()["type"] == "THREAD_NOT_FOUND"


async def test_agent_instructions_model_and_guidance(
    api: httpx.AsyncClient, fake_anthropic: FakeAnthropic
) -> None:
    agent = (
        await api.post(
            "/v1/agents",
            json={
                "name": "Reviewer",
                "instructions": "You review diffs strictly.",
                "model": "haiku",
            },
        )
    ).json()
    assert agent["id"].startswith("agt_") and agent["model"] == "haiku"
    fake_anthropic.reset()
    fake_anthropic.queue(Reply(blocks=[{"text": "LGTM"}]), Reply(blocks=[{"text": "ok"}]))
    run = (
        await api.post(
            "/v1/runs",
            json={
                "prompt": "review",
                "agentId": agent["id"],
                "guidance": "Focus on tests.",
                "start": True,
            },
        )
    ).json()
    assert run["agentId"] == agent["id"] and run["model"] == "haiku"
    await wait_for(api, run["id"], TERMINAL)
    req = fake_anthropic.requests[0]
    assert req["model"] == "claude-haiku-4-5"
    system = req["system"][0]["text"]
    assert system.startswith("You review diffs strictly.") and "Focus on tests." in system

    override = (
        await api.post(
            "/v1/runs",
            json={"prompt": "again", "agentId": agent["id"], "model": "sonnet", "start": True},
        )
    ).json()
    assert override["model"] == "sonnet"
    await wait_for(api, override["id"], TERMINAL)
    assert fake_anthropic.requests[1]["model"] == "claude-sonnet-4-5"


async def test_agent_crud_and_delete_conflict(api: httpx.AsyncClient) -> None:
    agent = (await api.post("/v1/agents", json={"name": "A", "instructions": "Be terse."})).json()
    patched = (
        await api.patch(f"/v1/agents/{agent['id']}", json={"name": "B", "model": "scripted"})
    ).json()
    assert (
        patched["name"] == "B"
        and patched["instructions"] == "Be terse."
        and patched["model"] == "scripted"
    )
    listed = (await api.get("/v1/agents")).json()
    assert listed["pagination"]["total"] >= 1 and agent["id"] in [a["id"] for a in listed["data"]]
    for bad in (
        {"name": ""},
        {"instructions": None},
        {"model": "gpt-5"},
        {"template": "missing"},
        {"x": 1},
    ):
        resp = await api.patch(f"/v1/agents/{agent['id']}", json=bad)
        assert resp.status_code == 400, (bad, resp.text)
    assert (await api.post("/v1/agents", json={"name": "no instructions"})).status_code == 400

    run = (
        await api.post(
            "/v1/runs",
            json={
                "prompt": script({"sleep": 30, "text": "x"}),
                "agentId": agent["id"],
                "start": True,
            },
        )
    ).json()
    assert run["model"] == "scripted"
    conflict = await api.delete(f"/v1/agents/{agent['id']}")
    assert conflict.status_code == 409 and conflict.json()["type"] == "CONFLICT"
    await api.post(f"/v1/runs/{run['id']}/cancel")
    assert (await api.delete(f"/v1/agents/{agent['id']}")).status_code == 204
    assert (await api.get(f"/v1/agents/{agent['id']}")).json()["type"] == "AGENT_NOT_FOUND"
    resp = await api.post(
        "/v1/runs", json={"prompt": "x", "model": "scripted", "agentId": agent["id"]}
    )
    assert resp.status_code == 404 and resp.json()["type"] == "AGENT_NOT_FOUND"
