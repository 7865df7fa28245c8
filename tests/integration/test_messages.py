"""Messages to a busy run over HTTP (``/v1/runs/{id}/messages``): steer and queue reach
the model at the turns the contract says, a pending one can be withdrawn, a delivered one
not, a stale ``expectedTurn`` is refused, the run's ending drops what is still pending,
and a message answers a question the run waits on. The three runs go side by side."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from runyard.client import AsyncRunyard
from tests.conftest import TERMINAL, wait_for
from tests.integration.test_events import assert_gapless, full_log
from tests.integration.test_interactive import start


async def post(api: httpx.AsyncClient, run_id: str, **body: Any) -> httpx.Response:
    return await api.post(f"/v1/runs/{run_id}/messages", json=body)


async def messages(api: httpx.AsyncClient, run_id: str, **params: Any) -> list[dict[str, Any]]:
    resp = await api.get(f"/v1/runs/{run_id}/messages", params=params)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


async def steer_and_queue(api: httpx.AsyncClient) -> None:
    run_id = await start(
        api,
        {"sleep": 2, "tool": "bash", "input": {"command": "true"}},
        {"text": "first answer"},
    )
    await wait_for(api, run_id, {"running"})
    stale = await post(api, run_id, content="late", expectedTurn=99)
    assert stale.status_code == 409 and stale.json()["type"] == "RUN_TURN_MISMATCH"
    bad = await post(api, run_id, content="x", mode="shout")
    assert bad.status_code == 400 and bad.json()["type"] == "VALIDATION_FAILED"
    huge = await post(api, run_id, content="x", expectedTurn=10**30)  # past any maxTurns
    assert huge.status_code == 400 and huge.json()["type"] == "VALIDATION_FAILED"
    steer = await post(api, run_id, content="use teal", mode="steer")
    queued = await post(api, run_id, content="then write docs", mode="queue")
    withdrawn = await post(api, run_id, content="never mind", mode="queue")
    for resp in (steer, queued, withdrawn):
        assert resp.status_code == 202, resp.text
        assert resp.json()["status"] == "pending" and resp.json()["id"].startswith("msg_")
    gone = await api.delete(f"/v1/runs/{run_id}/messages/{withdrawn.json()['id']}")
    assert gone.status_code == 200 and gone.json()["status"] == "cancelled"
    missing = await api.delete(f"/v1/runs/{run_id}/messages/msg_nope")
    assert missing.status_code == 404 and missing.json()["type"] == "MESSAGE_NOT_FOUND"

    done = await wait_for(api, run_id, TERMINAL)
    assert done["status"] == "completed"
    assert done["usage"]["turns"] == 3  # the queued message gave the agent a third turn
    listed = {m["id"]: m for m in await messages(api, run_id)}
    s, q = listed[steer.json()["id"]], listed[queued.json()["id"]]
    assert (s["status"], s["mode"], s["turn"]) == ("delivered", "steer", 2)
    assert (q["status"], q["mode"], q["turn"]) == ("delivered", "queue", 3)
    assert listed[withdrawn.json()["id"]]["status"] == "cancelled"
    delivered = await messages(api, run_id, status="delivered")
    assert [m["id"] for m in delivered] == [s["id"], q["id"]]
    again = await api.delete(f"/v1/runs/{run_id}/messages/{s['id']}")
    assert again.status_code == 409 and again.json()["type"] == "MESSAGE_ALREADY_DELIVERED"
    ended = await post(api, run_id, content="hello?")
    assert ended.status_code == 409 and ended.json()["type"] == "RUN_NOT_ACTIVE"

    log = await full_log(api, run_id)
    assert_gapless(log)
    types = [e["type"] for e in log]
    assert types.count("message.queued") == 3
    got = [e["data"] for e in log if e["type"] == "message.delivered"]
    assert got == [
        {"messageId": s["id"], "mode": "steer", "turn": 2},
        {"messageId": q["id"], "mode": "queue", "turn": 3},
    ]
    # Each is delivered before the model call that reads it.
    completed = [e["seq"] for e in log if e["type"] == "message.completed"]
    seqs = [e["seq"] for e in log if e["type"] == "message.delivered"]
    assert completed[0] < seqs[0] < completed[1] < seqs[1] < completed[2]


async def dropped_when_the_run_ends(api: httpx.AsyncClient) -> None:
    run_id = await start(api, {"sleep": 3, "text": "slow"})
    await wait_for(api, run_id, {"running"})
    key = api.headers["Authorization"].removeprefix("Bearer ")
    async with AsyncRunyard(str(api.base_url), key) as client:  # the Python client
        sent = await client.send_message(run_id, "after that", mode="queue")
        assert sent.status == "pending" and sent.id.startswith("msg_")
        page = await client.messages(run_id, status="pending")
        assert [(m.id, m.mode) for m in page.data] == [(sent.id, "queue")]
    assert (await api.post(f"/v1/runs/{run_id}/cancel")).json()["status"] == "cancelled"
    [m] = await messages(api, run_id)
    assert m["status"] == "dropped"
    log = await full_log(api, run_id)
    types = [e["type"] for e in log]
    assert types.index("message.dropped") < types.index("run.cancelled") == len(types) - 1


async def answers_a_question(api: httpx.AsyncClient) -> None:
    run_id = await start(api, {"ask": "Which colour?"}, {"text": "ok"})
    await wait_for(api, run_id, {"waiting_for_input"})
    sent = await post(api, run_id, content="teal", mode="queue")
    assert sent.status_code == 202 and sent.json()["status"] == "delivered"
    done = await wait_for(api, run_id, TERMINAL)
    assert done["status"] == "completed"
    [m] = await messages(api, run_id)
    assert (m["status"], m["turn"]) == ("delivered", 1)
    log = await full_log(api, run_id)
    answer = next(e for e in log if e["type"] == "run.input_received")
    assert answer["data"]["content"] == "teal"


async def test_messages_to_a_busy_run(api: httpx.AsyncClient) -> None:
    await asyncio.gather(
        steer_and_queue(api), dropped_when_the_run_ends(api), answers_a_question(api)
    )
