"""Humans in the loop over HTTP: waiting_for_input, input, JSON-RPC commands."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import TERMINAL, script, wait_for
from tests.fakes.anthropic_server import FakeAnthropic, Reply
from tests.integration.test_events import assert_gapless, full_log
from tests.stack import Stack


async def start(api: httpx.AsyncClient, *lines: dict[str, Any], **body: Any) -> str:
    resp = await api.post(
        "/v1/runs", json={"prompt": script(*lines), "model": "scripted", "start": True, **body}
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def test_ask_answer_complete(api: httpx.AsyncClient) -> None:
    run_id = await start(
        api,
        {"ask": "Which branch?"},
        {"tool": "bash", "input": {"command": "echo using-the-answer"}},
        {"text": "done"},
    )
    waiting = await wait_for(api, run_id, {"waiting_for_input"})
    assert waiting["pendingQuestion"] == "Which branch?"
    resp = await api.post(f"/v1/runs/{run_id}/input", json={"content": "main, please"})
    assert resp.status_code == 200 and resp.json() == {"ok": True}
    done = await wait_for(api, run_id, TERMINAL)
    assert done["status"] == "completed" and done["pendingQuestion"] is None
    log = await full_log(api, run_id)
    assert_gapless(log)
    ask = next(e for e in log if e["type"] == "run.waiting_for_input")
    got = next(e for e in log if e["type"] == "run.input_received")
    assert ask["data"]["question"] == "Which branch?" and got["data"]["content"] == "main, please"
    assert ask["seq"] < got["seq"]
    second = await api.post(f"/v1/runs/{run_id}/input", json={"content": "late"})
    assert second.status_code == 409 and second.json()["type"] == "RUN_NOT_WAITING_FOR_INPUT"


async def test_the_model_receives_the_answer(
    api: httpx.AsyncClient, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reset()
    fake_anthropic.queue(
        Reply(
            blocks=[
                {
                    "tool_use": {
                        "id": "toolu_ask",
                        "name": "ask_user",
                        "input": {"question": "Colour?"},
                    }
                }
            ]
        ),
        Reply(blocks=[{"text": "Painting it teal."}]),
    )
    run = (
        await api.post("/v1/runs", json={"prompt": "paint", "model": "sonnet", "start": True})
    ).json()
    await wait_for(api, run["id"], {"waiting_for_input"})
    assert (
        await api.post(f"/v1/runs/{run['id']}/input", json={"content": "teal"})
    ).status_code == 200
    done = await wait_for(api, run["id"], TERMINAL)
    assert done["outputs"][0]["text"] == "Painting it teal."
    answer = fake_anthropic.requests[1]["messages"][-1]["content"][0]
    assert answer == {"type": "tool_result", "tool_use_id": "toolu_ask", "content": "teal"}


async def test_input_rules(api: httpx.AsyncClient) -> None:
    run_id = await start(api, {"sleep": 1, "text": "busy"})
    resp = await api.post(f"/v1/runs/{run_id}/input", json={"content": "hello?"})
    assert resp.status_code == 409 and resp.json()["type"] == "RUN_NOT_WAITING_FOR_INPUT"
    for body in ({"content": ""}, {"content": "x" * (32 * 1024 + 1)}, {}, {"content": 3}):
        bad = await api.post(f"/v1/runs/{run_id}/input", json=body)
        assert bad.status_code == 400 and bad.json()["type"] == "VALIDATION_FAILED", body
    ok = await api.post(f"/v1/runs/{run_id}/input", json={"content": "é" * 16384})  # 32 KiB exactly
    assert ok.status_code == 409  # valid size; still not waiting
    await wait_for(api, run_id, TERMINAL)


async def test_idempotent_and_concurrent_answers(api: httpx.AsyncClient) -> None:
    run_id = await start(api, {"ask": "first?"}, {"ask": "second?"}, {"text": "done"})
    await wait_for(api, run_id, {"waiting_for_input"})
    key = {"Idempotency-Key": "answer-1"}
    a = await api.post(f"/v1/runs/{run_id}/input", json={"content": "one"}, headers=key)
    b = await api.post(f"/v1/runs/{run_id}/input", json={"content": "one"}, headers=key)
    assert (a.status_code, b.status_code) == (200, 200)
    # The second question: two different answers at once, exactly one wins.
    for _ in range(100):
        run = (await api.get(f"/v1/runs/{run_id}")).json()
        if run["status"] == "waiting_for_input" and run["pendingQuestion"] == "second?":
            break
        await asyncio.sleep(0.05)
    answers = await asyncio.gather(
        *(api.post(f"/v1/runs/{run_id}/input", json={"content": c}) for c in ("x", "y", "z"))
    )
    assert sorted(r.status_code for r in answers) == [200, 409, 409], [r.text for r in answers]
    await wait_for(api, run_id, TERMINAL)
    received = [e for e in await full_log(api, run_id) if e["type"] == "run.input_received"]
    contents = [e["data"]["content"] for e in received]
    assert len(contents) == 2 and contents[0] == "one" and contents[1] in {"x", "y", "z"}


async def test_cancel_while_waiting(api: httpx.AsyncClient) -> None:
    run_id = await start(api, {"ask": "never answered"}, {"text": "x"})
    await wait_for(api, run_id, {"waiting_for_input"})
    assert (await api.post(f"/v1/runs/{run_id}/cancel")).json()["status"] == "cancelled"
    await wait_for(api, run_id, {"cancelled"})
    assert_gapless(await full_log(api, run_id))


async def test_waiting_does_not_count_against_the_timeout(api: httpx.AsyncClient) -> None:
    run_id = await start(api, {"ask": "take your time"}, {"text": "ok"}, timeoutSeconds=2)
    await wait_for(api, run_id, {"waiting_for_input"})
    await asyncio.sleep(3)
    assert (await api.get(f"/v1/runs/{run_id}")).json()["status"] == "waiting_for_input"
    await api.post(f"/v1/runs/{run_id}/input", json={"content": "go"})
    assert (await wait_for(api, run_id, TERMINAL))["status"] == "completed"


async def test_worker_restart_while_waiting(api: httpx.AsyncClient, stack: Stack) -> None:
    run_id = await start(
        api,
        {"ask": "still there?"},
        {"tool": "bash", "input": {"command": "true"}},
        {"text": "resumed"},
    )
    # Kill as soon as the store says waiting: the workflow may not have seen mark_waiting
    # finish yet, so the answer below can reach it together with that result. It must be
    # taken then too (it used to be refused as 409, about one run in three).
    for _ in range(3000):
        if (await api.get(f"/v1/runs/{run_id}/status")).json()["status"] == "waiting_for_input":
            break
    stack.kill_worker(stack.workers[0])
    stack.start_worker()
    await asyncio.sleep(1)
    answered = await api.post(f"/v1/runs/{run_id}/input", json={"content": "yes"})
    assert answered.status_code == 200, answered.text
    done = await wait_for(api, run_id, TERMINAL, timeout=60)
    assert done["status"] == "completed" and done["outputs"][0]["text"] == "resumed"


async def rpc(
    api: httpx.AsyncClient, run_id: str, payload: Any, raw: bytes | None = None
) -> httpx.Response:
    if raw is not None:
        return await api.post(
            f"/v1/runs/{run_id}/command", content=raw, headers={"content-type": "application/json"}
        )
    return await api.post(f"/v1/runs/{run_id}/command", json=payload)


async def test_json_rpc_commands(api: httpx.AsyncClient) -> None:
    run_id = await start(
        api,
        {"ask": "name?"},
        {"sleep": 1.0, "tool": "bash", "input": {"command": "true"}},
        {"text": "bye"},
    )
    await wait_for(api, run_id, {"waiting_for_input"})
    ans = await rpc(
        api,
        run_id,
        {"jsonrpc": "2.0", "method": "user_message", "params": {"content": "Ada"}, "id": 1},
    )
    assert ans.status_code == 200 and ans.json() == {
        "jsonrpc": "2.0",
        "result": {"delivered": "answer"},
        "id": 1,
    }
    await wait_for(api, run_id, {"running"})
    queued = await rpc(
        api,
        run_id,
        {
            "jsonrpc": "2.0",
            "method": "user_message",
            "params": {"content": "also: be brief"},
            "id": "q",
        },
    )
    assert queued.json()["result"] == {"delivered": "queued"}

    for payload, raw, code, status in [
        (None, b"{nope", -32700, 400),
        ([{"jsonrpc": "2.0", "method": "cancel", "id": 1}], None, -32600, 400),
        ({"jsonrpc": "1.0", "method": "cancel", "id": 2}, None, -32600, 400),
        ({"jsonrpc": "2.0", "method": "cancel", "id": True}, None, -32600, 400),
        ({"jsonrpc": "2.0", "method": "reboot", "id": 3}, None, -32601, 200),
        (
            {"jsonrpc": "2.0", "method": "user_message", "params": {"content": ""}, "id": 4},
            None,
            -32602,
            200,
        ),
        ({"jsonrpc": "2.0", "method": "user_message", "params": [1], "id": 5}, None, -32602, 200),
    ]:
        resp = await rpc(api, run_id, payload, raw)
        assert resp.status_code == status and resp.json()["error"]["code"] == code, (
            payload,
            resp.text,
        )
        assert resp.json()["jsonrpc"] == "2.0"
    done = await wait_for(api, run_id, TERMINAL)
    assert done["status"] == "completed"
    after = await rpc(api, run_id, {"jsonrpc": "2.0", "method": "close", "id": 9})
    assert after.json()["error"]["code"] == -32000
    log = await full_log(api, run_id)
    assert any(e["type"] == "run.input_received" and e["data"].get("queued") for e in log)


async def test_queued_message_reaches_the_next_turn(
    api: httpx.AsyncClient, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reset()
    fake_anthropic.queue(
        Reply(
            blocks=[
                {"tool_use": {"id": "toolu_s", "name": "bash", "input": {"command": "sleep 1"}}}
            ]
        ),
        Reply(blocks=[{"text": "noted"}]),
    )
    run = (
        await api.post("/v1/runs", json={"prompt": "work", "model": "sonnet", "start": True})
    ).json()
    for _ in range(100):
        if any(e["type"] == "tool.call" for e in await full_log(api, run["id"])):
            break
        await asyncio.sleep(0.05)
    resp = await rpc(
        api,
        run["id"],
        {"jsonrpc": "2.0", "method": "user_message", "params": {"content": "use tabs"}, "id": 1},
    )
    assert resp.json()["result"] == {"delivered": "queued"}
    await wait_for(api, run["id"], TERMINAL)
    last = fake_anthropic.requests[1]["messages"][-1]["content"]
    assert last[0]["type"] == "tool_result"  # tool results first, as the API requires
    assert last[1] == {"type": "text", "text": "Message from the user: use tabs"}


async def test_close_and_cancel_commands(api: httpx.AsyncClient) -> None:
    run_id = await start(
        api,
        *[{"sleep": 0.3, "tool": "bash", "input": {"command": "true"}} for _ in range(20)],
        {"text": "unreached"},
    )
    await wait_for(api, run_id, {"running"})
    closing = await rpc(api, run_id, {"jsonrpc": "2.0", "method": "close", "id": 1})
    assert closing.json()["result"]["closing"] is True
    done = await wait_for(api, run_id, TERMINAL)
    assert done["status"] == "completed" and done["usage"]["turns"] < 20

    other = await start(api, {"sleep": 30, "text": "x"})
    await wait_for(api, other, {"running"})
    resp = await rpc(api, other, {"jsonrpc": "2.0", "method": "cancel", "id": 7})
    assert resp.json() == {
        "jsonrpc": "2.0",
        "result": {"id": other, "status": "cancelled"},
        "id": 7,
    }
    note = await rpc(api, other, {"jsonrpc": "2.0", "method": "cancel"})  # a notification
    assert note.status_code == 204
