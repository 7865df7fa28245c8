"""API keys (create, list, revoke, expiry, lastUsedAt) and usage, over real HTTP."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from runyard.db.engine import Database
from runyard.store.orgs import create_key, ensure_org
from tests.conftest import Keys, script, wait_for
from tests.integration.test_api_errors import assert_problem
from tests.stack import Stack


def client(stack: Stack, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def test_api_keys_create_list_revoke(stack: Stack, keys: Keys) -> None:
    org = "keys-" + secrets.token_hex(4)
    admin = await keys.make(org, ["runs:read", "runs:write", "admin"])
    writer = await keys.make(org)
    async with client(stack, admin) as api, client(stack, writer) as plain:
        # Scope admin is needed for all three.
        for method, path in [("POST", "/v1/api-keys"), ("GET", "/v1/api-keys")]:
            assert_problem(await plain.request(method, path, json={"name": "x"}), 403, "FORBIDDEN")
        assert_problem(await plain.delete("/v1/api-keys/key_x"), 403, "FORBIDDEN")

        expires = datetime.now(UTC) + timedelta(days=1)
        resp = await api.post(
            "/v1/api-keys",
            json={"name": "ci", "scopes": ["runs:read"], "expiresAt": rfc3339(expires)},
        )
        assert resp.status_code == 201, resp.text
        made = resp.json()
        assert made["id"].startswith("key_") and made["key"].startswith("ry_live_")
        assert made["name"] == "ci" and made["scopes"] == ["runs:read"]
        assert made["prefix"] == made["key"][:12]
        assert made["expiresAt"] == rfc3339(expires)
        default = (await api.post("/v1/api-keys", json={"name": "default"})).json()
        assert default["scopes"] == ["runs:read", "runs:write"] and default["expiresAt"] is None

        async with client(stack, made["key"]) as new:
            assert (await new.get("/v1/runs")).status_code == 200
            assert_problem(await new.post("/v1/runs", json={"prompt": "x"}), 403, "FORBIDDEN")

        listed = (await api.get("/v1/api-keys")).json()
        assert listed["pagination"]["total"] == 4
        by_id = {k["id"]: k for k in listed["data"]}
        assert all("key" not in k for k in listed["data"])
        assert by_id[made["id"]]["prefix"] == made["prefix"]
        # The new key's first use was recorded; the unused one has none.
        assert by_id[made["id"]]["lastUsedAt"] is not None
        assert by_id[default["id"]]["lastUsedAt"] is None

        revoked = await api.delete(f"/v1/api-keys/{made['id']}")
        assert revoked.status_code == 200 and revoked.json()["revokedAt"], revoked.text
        async with client(stack, made["key"]) as gone:
            # The API process that revoked it refuses it at once.
            assert_problem(await gone.get("/v1/runs"), 401, "API_KEY_INVALID")
        assert_problem(await api.delete(f"/v1/api-keys/{made['id']}"), 404, "NOT_FOUND")
        ids = [k["id"] for k in (await api.get("/v1/api-keys")).json()["data"]]
        assert made["id"] not in ids and default["id"] in ids

    # Another organization's admin cannot see or revoke these keys.
    other = await keys.make("keys-other-" + secrets.token_hex(4), ["admin"])
    async with client(stack, other) as intruder:
        assert default["id"] not in [
            k["id"] for k in (await intruder.get("/v1/api-keys")).json()["data"]
        ]
        assert_problem(await intruder.delete(f"/v1/api-keys/{default['id']}"), 404, "NOT_FOUND")


async def test_api_key_bodies_are_validated(stack: Stack, keys: Keys) -> None:
    admin = await keys.make("keys-bad-" + secrets.token_hex(4), ["admin"])
    past = rfc3339(datetime.now(UTC) - timedelta(minutes=1))
    async with client(stack, admin) as api:
        for body, field in [
            ({}, "name"),
            ({"name": ""}, "name"),
            ({"name": "x", "scopes": ["root"]}, "scopes"),
            ({"name": "x", "scopes": []}, "scopes"),
            ({"name": "x", "expiresAt": past}, "expiresAt"),
            ({"name": "x", "expiresAt": "tomorrow"}, "expiresAt"),
            ({"name": "x", "key": "ry_live_mine"}, "key"),
        ]:
            resp = await api.post("/v1/api-keys", json=body)
            assert_problem(resp, 400, "VALIDATION_FAILED")
            assert field in [e["field"].split(".")[0] for e in resp.json()["errors"]], resp.text
        naive = await api.post("/v1/api-keys", json={"name": "x", "expiresAt": "2030-01-01T00:00"})
        assert_problem(naive, 400, "VALIDATION_FAILED")
        assert naive.json()["errors"][0]["code"] == "timezone_aware", naive.text


async def test_expired_key_is_refused(stack: Stack, stack_db: Database) -> None:
    async with stack_db.write() as s:
        org = await ensure_org(s, "expiry-" + secrets.token_hex(4))
        old, _ = await create_key(
            s, org.id, ["runs:read"], expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )
        soon, _ = await create_key(
            s, org.id, ["runs:read"], expires_at=datetime.now(UTC) + timedelta(seconds=2)
        )
    async with client(stack, old) as api:
        assert_problem(await api.get("/v1/runs"), 401, "API_KEY_INVALID")
    # A key that expires while the API process has it cached is refused all the same.
    async with client(stack, soon) as api:
        assert (await api.get("/v1/runs")).status_code == 200
        deadline = asyncio.get_running_loop().time() + 10
        while (resp := await api.get("/v1/runs")).status_code == 200:
            assert asyncio.get_running_loop().time() < deadline, "the expired key still works"
            await asyncio.sleep(0.2)
        assert_problem(resp, 401, "API_KEY_INVALID")


async def test_usage_is_the_sum_of_the_runs(api: httpx.AsyncClient) -> None:
    empty = (await api.get("/v1/usage")).json()
    assert empty["creditsBalance"] is None and empty["costUsd"] == 0 and empty["runs"]["total"] == 0
    now = datetime.now(UTC)
    assert empty["from"] == rfc3339(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0))

    def turn(i: int, final: bool = False) -> dict[str, Any]:
        usage = {"inputTokens": 1000 * i, "outputTokens": 77 * i, "cacheReadTokens": 10 * i}
        if final:
            return {"text": "done", "usage": usage}
        return {"tool": "bash", "input": {"command": "true"}, "usage": usage}

    ids = []
    for n in (1, 2, 3):
        body = {"prompt": script(*[turn(i) for i in range(1, n)], turn(n, True))}
        resp = await api.post("/v1/runs", json=body | {"model": "scripted", "start": True})
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    failing = {"prompt": script({"fail": "boom"}), "model": "scripted", "start": True}
    ids.append((await api.post("/v1/runs", json=failing)).json()["id"])
    queued = await api.post("/v1/runs", json={"prompt": "x", "model": "scripted"})
    runs = [await wait_for(api, i, {"completed", "failed"}) for i in ids]
    runs.append(queued.json())

    usage = (await api.get("/v1/usage")).json()
    assert usage["inputTokens"] == sum(r["usage"]["inputTokens"] for r in runs) > 0
    assert usage["outputTokens"] == sum(r["usage"]["outputTokens"] for r in runs) > 0
    assert usage["creditsUsed"] == sum(r["usage"]["creditsUsed"] for r in runs) > 0
    assert abs(usage["costUsd"] - sum(r["usage"]["costUsd"] for r in runs)) < 1e-6
    assert usage["runs"] == {
        "total": 5,
        "active": 0,
        "completed": 3,
        "failed": 1,
        "cancelled": 0,
    }
    # A period that holds none of them; a period given explicitly is echoed back.
    before = {"from": "2020-01-01T00:00:00Z", "to": "2020-02-01T00:00:00Z"}
    past = (await api.get("/v1/usage", params=before)).json()
    assert past["runs"]["total"] == 0 and past["inputTokens"] == 0
    assert (past["from"], past["to"]) == (before["from"], before["to"])
    for params, field in [
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-01-01T00:00:00"}, "from"),
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
    ]:
        resp = await api.get("/v1/usage", params=params)
        assert_problem(resp, 400, "VALIDATION_FAILED")
        assert resp.json()["errors"][0]["field"] == field, resp.text
    naive = await api.get("/v1/usage", params={"from": "2026-01-01T00:00:00"})
    assert naive.json()["errors"][0]["code"] == "timezone_aware", naive.text
    await api.post(f"/v1/runs/{queued.json()['id']}/cancel")


async def test_a_key_hands_on_no_more_than_it_holds(stack: Stack, stack_db: Database) -> None:
    """Issue 23, item 7: a key that expires soon cannot mint a longer-lived (or never
    expiring) key; without expiresAt the new key expires with its creator."""
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    async with stack_db.write() as s:
        org = await ensure_org(s, "delegate-" + secrets.token_hex(4))
        short, _ = await create_key(s, org.id, ["admin"], expires_at=soon)
    async with client(stack, short) as api:
        bodies: list[dict[str, Any]] = [
            {"name": "forever", "scopes": ["admin"]},  # inherits the creator's expiry
            {"name": "later", "expiresAt": rfc3339(soon + timedelta(days=1))},
        ]
        for body in bodies:
            resp = await api.post("/v1/api-keys", json=body)
            if "expiresAt" in body:
                assert_problem(resp, 403, "FORBIDDEN")
                assert "expiresAt" in resp.json()["detail"]
            else:
                assert resp.status_code == 201, resp.text
                assert resp.json()["expiresAt"] == rfc3339(soon)
        earlier = rfc3339(soon - timedelta(minutes=1))
        resp = await api.post("/v1/api-keys", json={"name": "ok", "expiresAt": earlier})
        assert resp.status_code == 201 and resp.json()["expiresAt"] == earlier, resp.text
        listed = (await api.get("/v1/api-keys")).json()["data"]
        assert all(k["expiresAt"] is not None for k in listed), listed
