"""Auth, tenancy and bad input: every failure is a clear RFC 9457 problem, never a bare 500."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import Keys, script
from tests.stack import Stack

PROBLEM = "application/problem+json"


def assert_problem(resp: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM
    assert resp.headers["x-request-id"]
    body: dict[str, object] = resp.json()
    assert body["type"] == code and body["status"] == status
    assert body["title"] and body["detail"] and body["requestId"] == resp.headers["x-request-id"]
    return body


async def test_auth_failures(stack: Stack, keys: Keys) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url) as c:
        assert_problem(await c.get("/v1/runs"), 401, "AUTH_UNAUTHORIZED")
        assert_problem(
            await c.get("/v1/runs", headers={"Authorization": "Basic x"}), 401, "AUTH_UNAUTHORIZED"
        )
        bad = {"Authorization": "Bearer ry_live_nope"}
        assert_problem(await c.get("/v1/runs", headers=bad), 401, "API_KEY_INVALID")
        reader = await keys.make("readers", ["runs:read"])
        h = {"Authorization": f"Bearer {reader}"}
        assert (await c.get("/v1/runs", headers=h)).status_code == 200
        resp = await c.post("/v1/runs", headers=h, json={"prompt": "x", "model": "scripted"})
        assert_problem(resp, 403, "FORBIDDEN")
        ok = await c.get("/v1/runs", headers=h)
        assert ok.headers["x-ratelimit-limit"] and ok.headers["x-ratelimit-remaining"]
        assert int(ok.headers["x-ratelimit-reset"]) > 0


async def test_other_organizations_runs_are_not_found(
    api: httpx.AsyncClient, stack: Stack, keys: Keys
) -> None:
    run = (
        await api.post("/v1/runs", json={"prompt": script({"text": "x"}), "model": "scripted"})
    ).json()
    other = await keys.make("intruder")
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {other}"}
    ) as c:
        for method, path in [
            ("GET", f"/v1/runs/{run['id']}"),
            ("GET", f"/v1/runs/{run['id']}/status"),
            ("POST", f"/v1/runs/{run['id']}/exec"),
            ("POST", f"/v1/runs/{run['id']}/cancel"),
        ]:
            assert_problem(await c.request(method, path), 404, "RUN_NOT_FOUND")
        assert run["id"] not in [r["id"] for r in (await c.get("/v1/runs")).json()["data"]]
    # The owner's run was untouched by all of that.
    assert (await api.get(f"/v1/runs/{run['id']}")).json()["status"] == "queued"
    await api.post(f"/v1/runs/{run['id']}/cancel")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 100_001}, "prompt"),
        ({"prompt": "x", "maxTurns": 0}, "maxTurns"),
        ({"prompt": "x", "maxTurns": 1001}, "maxTurns"),
        ({"prompt": "x", "maxCostUsd": 0}, "maxCostUsd"),
        ({"prompt": "x", "timeoutSeconds": 3601}, "timeoutSeconds"),
        ({"prompt": "x", "env": {"1BAD": "v"}}, "env"),
        ({"prompt": "x", "env": {"A": 3}}, "env.A"),
        ({"prompt": "x", "callbackUrl": "ftp://x"}, "callbackUrl"),
        ({"prompt": "x", "surprise": 1}, "surprise"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "x", "start": "maybe"}, "start"),
        ({"prompt": "x", "template": "Bad Slug"}, "template"),
    ],
)
async def test_bad_create_bodies(
    api: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    body.setdefault("model", "scripted")
    problem = assert_problem(await api.post("/v1/runs", json=body), 400, "VALIDATION_FAILED")
    errors = problem["errors"]
    assert isinstance(errors, list) and errors
    assert field in [e["field"] for e in errors], errors
    assert all(e["message"] and e["code"] for e in errors)


async def test_malformed_requests(api: httpx.AsyncClient) -> None:
    raw = {"content-type": "application/json"}
    assert_problem(
        await api.post("/v1/runs", content=b"{not json", headers=raw), 400, "VALIDATION_FAILED"
    )
    assert_problem(
        await api.post("/v1/runs", content=b"[1,2]", headers=raw), 400, "VALIDATION_FAILED"
    )
    assert_problem(
        await api.post("/v1/runs", content=b"\xff\xfe", headers=raw), 400, "VALIDATION_FAILED"
    )
    assert_problem(await api.get("/v1/runs?limit=0"), 400, "VALIDATION_FAILED")
    assert_problem(await api.get("/v1/runs?limit=101"), 400, "VALIDATION_FAILED")
    assert_problem(await api.get("/v1/runs?page=0"), 400, "VALIDATION_FAILED")
    assert_problem(await api.get("/v1/runs?status=bogus"), 400, "VALIDATION_FAILED")
    assert_problem(await api.get("/v1/runs?createdAfter=yesterday"), 400, "VALIDATION_FAILED")
    # A bare number is not read as seconds since 1970 (found by the fuzz test).
    assert_problem(await api.get("/v1/runs?createdBefore=0.5"), 400, "VALIDATION_FAILED")
    # An empty Idempotency-Key is refused, twice over: it used to be stored as a key,
    # and the second such create hit the unique index as a bare 500 (the fuzz test).
    for _ in range(2):
        resp = await api.post(
            "/v1/runs",
            json={"prompt": "x", "model": "scripted"},
            headers={"Idempotency-Key": ""},
        )
        assert_problem(resp, 400, "VALIDATION_FAILED")
    assert_problem(await api.get("/v1/runs/run_doesnotexist"), 404, "RUN_NOT_FOUND")
    assert_problem(await api.get("/v1/nowhere"), 404, "NOT_FOUND")
    assert_problem(await api.delete("/v1/runs"), 405, "BAD_REQUEST")


def _nested(depth: int, leaf: object) -> object:
    """``leaf`` inside ``depth`` objects."""
    for _ in range(depth):
        leaf = {"n": leaf}
    return leaf


async def test_one_json_rule_for_every_body(api: httpx.AsyncClient) -> None:
    """Issue 23, items 13 and 14: a NUL at any depth, NaN or Infinity anywhere, and
    nesting past 32 levels are 400 VALIDATION_FAILED in every JSON body (metadata, env,
    template fields, JSON-RPC params), and nothing of them is stored."""
    raw = {"content-type": "application/json"}
    deep_nul = json.dumps({"prompt": "x", "metadata": _nested(70, "a\u0000b")})
    too_deep = json.dumps({"prompt": "x", "metadata": _nested(32, 1)})  # 33 with the body
    bodies = [
        ("/v1/runs", deep_nul),
        ("/v1/runs", too_deep),
        ("/v1/runs", '{"prompt": "x", "metadata": {"score": NaN}}'),
        ("/v1/runs", '{"prompt": "x", "metadata": {"a": [1, -Infinity]}}'),
        ("/v1/runs", '{"prompt": "x", "maxCostUsd": Infinity}'),
        ("/v1/threads", '{"metadata": {"x": [NaN]}}'),
        ("/v1/threads", json.dumps({"metadata": _nested(40, "a\u0000")})),
        ("/v1/templates", '{"slug": "nan-t", "name": "n", "defaults": {"maxCostUsd": NaN}}'),
        ("/v1/agents", '{"name": "a", "instructions": "i", "model": "scripted", "x": NaN}'),
    ]
    for path, body in bodies:
        resp = await api.post(path, content=body, headers=raw)
        assert_problem(resp, 400, "VALIDATION_FAILED")
    # Exactly 32 levels (the body and 31 inside metadata) is fine.
    ok = {"prompt": "x", "model": "scripted", "metadata": _nested(31, 1)}
    run = (await api.post("/v1/runs", json=ok)).json()
    assert run["metadata"] == _nested(31, 1)
    assert (await api.get("/v1/runs")).json()["pagination"]["total"] == 1
    # JSON-RPC params follow the same rule (its own error objects), each with its code:
    # a NaN is no JSON (parse error), a NUL or too deep a nesting are invalid params.
    for params, code in [
        ('{"content": "x", "n": NaN}', -32700),
        (json.dumps({"content": "x", "p": _nested(40, "\u0000")}), -32602),
        (json.dumps({"content": "x", "p": _nested(40, 1)}), -32602),
    ]:
        body = '{"jsonrpc": "2.0", "method": "user_message", "id": 1, "params": ' + params + "}"
        resp = await api.post(f"/v1/runs/{run['id']}/command", content=body, headers=raw)
        assert resp.json()["error"]["code"] == code, resp.text
    await api.post(f"/v1/runs/{run['id']}/cancel")


async def test_create_checks(api: httpx.AsyncClient) -> None:
    resp = await api.post("/v1/runs", json={"prompt": "x", "model": "scripted", "template": "nope"})
    assert_problem(resp, 400, "RUN_TEMPLATE_NOT_FOUND")
    resp = await api.post("/v1/runs", json={"prompt": "x", "model": "gpt-4"})
    assert_problem(resp, 400, "VALIDATION_FAILED")
    resp = await api.post(
        "/v1/runs", json={"prompt": "x", "model": "scripted", "repo": "/no/such/repo"}
    )
    assert_problem(resp, 404, "REPOSITORY_NOT_FOUND")
    resp = await api.post(
        "/v1/runs", json={"prompt": "x", "model": "scripted", "repo": "not a repo!"}
    )
    assert_problem(resp, 400, "VALIDATION_FAILED")


async def test_idempotent_create(api: httpx.AsyncClient) -> None:
    body = {"prompt": script({"text": "once"}), "model": "scripted"}
    first = await api.post("/v1/runs", json=body, headers={"Idempotency-Key": "abc-1"})
    again = await api.post("/v1/runs", json=body, headers={"Idempotency-Key": "abc-1"})
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    other = await api.post("/v1/runs", json=body, headers={"Idempotency-Key": "abc-2"})
    assert other.json()["id"] != first.json()["id"]
    for r in (first, other):
        await api.post(f"/v1/runs/{r.json()['id']}/cancel")


async def test_list_pagination_and_filters(api: httpx.AsyncClient) -> None:
    ids = []
    for i in range(5):
        ids.append(
            (await api.post("/v1/runs", json={"prompt": f"p{i}", "model": "scripted"})).json()["id"]
        )
    await api.post(f"/v1/runs/{ids[0]}/cancel")
    page1 = (await api.get("/v1/runs?limit=2")).json()
    assert page1["pagination"] == {"page": 1, "limit": 2, "total": 5, "totalPages": 3}
    page3 = (await api.get("/v1/runs?limit=2&page=3")).json()
    listed = [r["id"] for r in page1["data"]] + [
        r["id"] for r in (await api.get("/v1/runs?limit=2&page=2")).json()["data"]
    ]
    listed += [r["id"] for r in page3["data"]]
    assert listed == list(reversed(ids))  # newest first, each exactly once
    cancelled = (await api.get("/v1/runs?status=cancelled")).json()
    assert [r["id"] for r in cancelled["data"]] == [ids[0]]
    both = (await api.get("/v1/runs?status=cancelled,queued")).json()
    assert both["pagination"]["total"] == 5
    future = (await api.get("/v1/runs", params={"createdAfter": "2999-01-01T00:00:00Z"})).json()
    assert future["data"] == []
    for i in ids[1:]:
        await api.post(f"/v1/runs/{i}/cancel")


async def test_healthz(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url) as c:
        resp = await c.get("/healthz")
    assert resp.json() == {"status": "ok", "database": "ok", "temporal": "ok"}
