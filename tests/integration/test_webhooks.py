"""Watchers, run callbacks and signed organization webhooks, against a real receiver."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook as Verifier
from temporalio.client import WorkflowExecutionStatus

from runyard.db.engine import Database
from runyard.db.tables import WebhookDelivery
from runyard.settings import Settings
from runyard.temporal import connect
from tests.conftest import TERMINAL, poll_until, script, wait_for
from tests.fakes.receiver import Receiver
from tests.stack import Stack


def path() -> str:
    return "hook-" + secrets.token_hex(4)


async def run_to_end(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    run = (
        await api.post(
            "/v1/runs",
            json={"prompt": script({"text": "hooked"}), "model": "scripted", "start": True, **body},
        )
    ).json()
    return await wait_for(api, run["id"], TERMINAL)


async def test_watcher_and_callback_get_the_final_run_once(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    cb, w = path(), path()
    run = (
        await api.post(
            "/v1/runs",
            json={
                "prompt": script({"text": "watched"}),
                "model": "scripted",
                "callbackUrl": receiver.url(cb),
            },
        )
    ).json()
    watch = await api.post(f"/v1/runs/{run['id']}/watch", json={"callbackUrl": receiver.url(w)})
    assert watch.status_code == 201
    assert (
        set(watch.json()) == {"id", "runId", "callbackUrl", "createdAt"}
        and watch.json()["runId"] == run["id"]
    )
    await api.post(f"/v1/runs/{run['id']}/exec")
    await wait_for(api, run["id"], TERMINAL)
    for p in (cb, w):
        (got,) = await asyncio.to_thread(receiver.wait_for, p, 1)
        body = json.loads(got.body)
        assert body["id"] == run["id"] and body["status"] == "completed"
        assert body["outputs"] == [{"type": "text", "text": "watched"}]
        assert "webhook-signature" not in got.headers  # callbacks are unsigned
    await asyncio.sleep(1.0)
    assert len(receiver.at(cb)) == 1 and len(receiver.at(w)) == 1
    late = await api.post(f"/v1/runs/{run['id']}/watch", json={"callbackUrl": receiver.url(path())})
    assert late.status_code == 409


async def test_org_webhook_is_signed(api: httpx.AsyncClient, receiver: Receiver) -> None:
    p = path()
    created = await api.post("/v1/webhooks", json={"url": receiver.url(p)})
    assert created.status_code == 201
    hook = created.json()
    assert hook["secret"].startswith("whsec_") and hook["enabled"] is True
    assert "secret" not in (await api.get(f"/v1/webhooks/{hook['id']}")).json()
    run = await run_to_end(api)
    got = await asyncio.to_thread(receiver.wait_for, p, 3)
    types = []
    for r in got:
        payload = Verifier(hook["secret"]).verify(r.body, r.headers)
        assert payload["data"]["id"] == run["id"] and r.headers["webhook-id"].startswith("msg_")
        types.append(payload["type"])
    assert {"run.started", "output.detected", "run.completed"} <= set(types)
    with pytest.raises(Exception, match="signature"):
        Verifier("whsec_" + "A" * 43).verify(got[0].body, got[0].headers)


async def test_retries_keep_the_webhook_id(api: httpx.AsyncClient, receiver: Receiver) -> None:
    p = path()
    receiver.answer(p, 500, 500, 200)
    hook = (
        await api.post("/v1/webhooks", json={"url": receiver.url(p), "events": ["run.completed"]})
    ).json()
    await run_to_end(api)
    got = await asyncio.to_thread(receiver.wait_for, p, 3)
    assert len({r.headers["webhook-id"] for r in got}) == 1
    for _ in range(50):
        deliveries = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]
        if deliveries and deliveries[0]["status"] == "delivered":
            break
        await asyncio.sleep(0.1)
    (d,) = deliveries
    assert d["status"] == "delivered" and [a["statusCode"] for a in d["attempts"]] == [
        500,
        500,
        200,
    ]
    assert all(a["latencyMs"] >= 0 for a in d["attempts"])

    again = await api.post(f"/v1/webhooks/{hook['id']}/deliveries/{d['id']}/redeliver")
    assert again.status_code == 202 and again.json()["messageId"] == d["messageId"]
    got = await asyncio.to_thread(receiver.wait_for, p, 4)
    assert got[-1].headers["webhook-id"] == d["messageId"]


async def test_410_disables_the_endpoint(api: httpx.AsyncClient, receiver: Receiver) -> None:
    p = path()
    receiver.answer(p, 410)
    hook = (
        await api.post("/v1/webhooks", json={"url": receiver.url(p), "events": ["run.completed"]})
    ).json()
    await run_to_end(api)
    await asyncio.to_thread(receiver.wait_for, p, 1)
    for _ in range(50):
        state = (await api.get(f"/v1/webhooks/{hook['id']}")).json()
        if not state["enabled"]:
            break
        await asyncio.sleep(0.1)
    assert state["enabled"] is False and "410" in state["disabledReason"]
    await run_to_end(api)
    await asyncio.sleep(1)
    assert len(receiver.at(p)) == 1  # a disabled endpoint gets nothing more


async def test_delivery_survives_a_worker_kill(
    api: httpx.AsyncClient, receiver: Receiver, stack: Stack
) -> None:
    p = path()
    receiver.answer(p, (503, {"Retry-After": "3"}), 200)
    await api.post("/v1/webhooks", json={"url": receiver.url(p), "events": ["run.completed"]})
    await run_to_end(api)
    await asyncio.to_thread(receiver.wait_for, p, 1)
    stack.kill_worker(stack.workers[0])
    await asyncio.sleep(1)
    stack.start_worker()
    got = await asyncio.to_thread(receiver.wait_for, p, 2, 60)
    assert got[1].at - got[0].at >= 2.9  # Retry-After was honoured
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"]


async def test_rotation_signs_with_both_secrets(api: httpx.AsyncClient, receiver: Receiver) -> None:
    p = path()
    hook = (
        await api.post("/v1/webhooks", json={"url": receiver.url(p), "events": ["run.completed"]})
    ).json()
    rotated = (await api.post(f"/v1/webhooks/{hook['id']}/rotate-secret")).json()
    assert rotated["secret"] != hook["secret"] and rotated["previousSecretExpiresAt"]
    await run_to_end(api)
    (got,) = await asyncio.to_thread(receiver.wait_for, p, 1)
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for secret in (hook["secret"], rotated["secret"]):
        Verifier(secret).verify(got.body, got.headers)


async def test_webhook_crud_limits(api: httpx.AsyncClient, receiver: Receiver) -> None:
    first = (await api.post("/v1/webhooks", json={"url": receiver.url("dup")})).json()
    dup = await api.post("/v1/webhooks", json={"url": receiver.url("dup")})
    assert dup.status_code == 409 and dup.json()["type"] == "WEBHOOK_URL_DUPLICATE"
    bad = await api.post(
        "/v1/webhooks", json={"url": receiver.url("x"), "events": ["run.exploded"]}
    )
    assert bad.status_code == 400
    for i in range(24):
        assert (
            await api.post("/v1/webhooks", json={"url": receiver.url(f"n{i}")})
        ).status_code == 201
    over = await api.post("/v1/webhooks", json={"url": receiver.url("one-too-many")})
    assert over.status_code == 409 and over.json()["type"] == "WEBHOOK_LIMIT_EXCEEDED"
    patched = (
        await api.patch(
            f"/v1/webhooks/{first['id']}", json={"enabled": False, "events": ["run.failed"]}
        )
    ).json()
    assert patched["enabled"] is False and patched["events"] == ["run.failed"]
    assert (await api.delete(f"/v1/webhooks/{first['id']}")).status_code == 204
    assert (await api.get(f"/v1/webhooks/{first['id']}")).json()["type"] == "WEBHOOK_NOT_FOUND"
    assert (await api.get("/v1/webhooks")).json()["pagination"]["total"] == 24


@pytest.mark.parametrize("how", ["delete", "disable"])
async def test_a_removed_webhook_stops_its_pending_deliveries(
    api: httpx.AsyncClient, receiver: Receiver, stack: Stack, stack_db: Database, how: str
) -> None:
    """Deleting (or disabling) a webhook ends its deliveries' retries at once, not at their
    next attempt hours later: the delivery is cancelled and its workflow with it."""
    p = path()
    receiver.answer(p, (503, {"Retry-After": "3600"}))  # the next attempt an hour away
    hook = (
        await api.post("/v1/webhooks", json={"url": receiver.url(p), "events": ["run.completed"]})
    ).json()
    await run_to_end(api)
    await asyncio.to_thread(receiver.wait_for, p, 1)
    temporal = await connect(Settings(temporal_address=stack.env["TEMPORAL_ADDRESS"]))
    deliveries: list[dict[str, Any]] = []

    async def waiting_to_retry() -> bool:
        nonlocal deliveries
        deliveries = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()["data"]
        return len(deliveries) == 1 and len(deliveries[0]["attempts"]) == 1

    await poll_until(waiting_to_retry, "the first attempt's record")
    (delivery,) = deliveries
    assert delivery["status"] == "pending"
    handle = temporal.get_workflow_handle(delivery["id"])
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

    if how == "delete":
        assert (await api.delete(f"/v1/webhooks/{hook['id']}")).status_code == 204
    else:
        off = await api.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": False})
        assert off.status_code == 200 and off.json()["enabled"] is False

    async def workflow_cancelled() -> bool:
        return (await handle.describe()).status == WorkflowExecutionStatus.CANCELED

    await poll_until(workflow_cancelled, "the delivery workflow's cancellation", timeout=10)
    async with stack_db.session() as s:
        row = await s.get(WebhookDelivery, delivery["id"])
    assert row is not None and row.status == "cancelled"
    assert len(receiver.at(p)) == 1
