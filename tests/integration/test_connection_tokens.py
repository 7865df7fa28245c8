"""Connection tokens: one run's paths only, as a Bearer header or ``?token=``."""

from __future__ import annotations

import secrets

import httpx
import jwt

from tests.conftest import Keys, script, wait_for
from tests.integration.test_accounts import client
from tests.integration.test_api_errors import assert_problem
from tests.sse import read_events
from tests.stack import Stack


async def test_token_opens_its_run_only(stack: Stack, keys: Keys) -> None:
    org = "tokens-" + secrets.token_hex(4)
    key = await keys.make(org, ["runs:read", "runs:write", "admin"])
    async with client(stack, key) as api:
        lines = [{"ask": "which colour?"}, {"text": "done"}]
        body = {"prompt": script(*lines), "model": "scripted", "start": True}
        run = (await api.post("/v1/runs", json=body)).json()
        other = (await api.post("/v1/runs", json={"prompt": "x", "model": "scripted"})).json()
        resp = await api.get(f"/v1/runs/{run['id']}/connection-token")
        assert resp.status_code == 200, resp.text
        token, expires = resp.json()["token"], resp.json()["expiresAt"]
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["sub"] == run["id"] and claims["exp"] - claims["iat"] == 24 * 3600
        assert expires.endswith("Z") and "admin" not in claims["scope"]
        await wait_for(api, run["id"], {"waiting_for_input"})

    rid = run["id"]
    async with client(stack, await keys.make("tokens-intruder-" + secrets.token_hex(4))) as c:
        # Another organization's run is as missing as ever.
        assert_problem(await c.get(f"/v1/runs/{rid}/connection-token"), 404, "RUN_NOT_FOUND")
    async with client(stack, token) as tok:
        # Its own run's paths, with the header.
        assert (await tok.get(f"/v1/runs/{rid}")).json()["id"] == rid
        assert (await tok.get(f"/v1/runs/{rid}/status")).status_code == 200
        assert (await tok.get(f"/v1/runs/{rid}/logs")).status_code == 200
        assert (await tok.get(f"/v1/runs/{rid}/session-logs")).status_code == 200
        answer = await tok.post(f"/v1/runs/{rid}/input", json={"content": "blue"})
        assert answer.status_code == 200, answer.text
        # Anything else: 401 API_KEY_INVALID, however well-formed the request.
        for method, path in [
            ("GET", f"/v1/runs/{other['id']}"),
            ("GET", f"/v1/runs/{other['id']}/status"),
            ("POST", f"/v1/runs/{other['id']}/exec"),
            ("GET", "/v1/runs"),
            ("POST", "/v1/runs"),
            ("GET", "/v1/usage"),
            ("GET", "/v1/api-keys"),
            ("POST", f"/v1/runs/{rid}/cancel"),
            ("POST", f"/v1/runs/{rid}/exec"),
            ("POST", f"/v1/runs/{rid}/watch"),
            ("GET", f"/v1/runs/{rid}/connection-token"),
        ]:
            resp = await tok.request(method, path, json={"prompt": "x"})
            assert_problem(resp, 401, "API_KEY_INVALID")

    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as anon:
        # ?token= where a client cannot set headers: the SSE stream, to the end of the run.
        events = await read_events(anon, rid, params={"token": token})
        assert events[-1]["type"] == "run.completed"
        assert (await anon.get(f"/v1/runs/{rid}", params={"token": token})).status_code == 200
        assert_problem(await anon.get("/v1/runs", params={"token": token}), 401, "API_KEY_INVALID")
        other_path = f"/v1/runs/{other['id']}/events"
        assert_problem(await anon.get(other_path, params={"token": token}), 401, "API_KEY_INVALID")
        # An API key is never taken from the URL; a tampered token is nobody's.
        resp = await anon.get(f"/v1/runs/{rid}", params={"token": key})
        assert_problem(resp, 401, "API_KEY_INVALID")
        head, payload, sig = token.split(".")
        forged = f"{head}.{payload}.{sig[:-4]}AAAA"
        resp = await anon.get(f"/v1/runs/{rid}", params={"token": forged})
        assert_problem(resp, 401, "API_KEY_INVALID")
        unsigned = jwt.encode(claims, "not-the-server-secret-but-long-enough-32", algorithm="HS256")
        resp = await anon.get(f"/v1/runs/{rid}", headers={"Authorization": f"Bearer {unsigned}"})
        assert_problem(resp, 401, "API_KEY_INVALID")
    async with client(stack, key) as api:
        await api.post(f"/v1/runs/{other['id']}/cancel")


async def test_token_keeps_its_keys_limits(stack: Stack, keys: Keys) -> None:
    org = "tokens-ro-" + secrets.token_hex(4)
    admin = await keys.make(org, ["admin"])
    reader = await keys.make(org, ["runs:read"])
    async with client(stack, admin) as api:
        body = {"prompt": script({"ask": "?"}, {"text": "ok"}), "model": "scripted", "start": True}
        run = (await api.post("/v1/runs", json=body)).json()
        await wait_for(api, run["id"], {"waiting_for_input"})
        reader_id = next(
            k["id"]
            for k in (await api.get("/v1/api-keys")).json()["data"]
            if "admin" not in k["scopes"]
        )
    async with client(stack, reader) as ro:
        token = (await ro.get(f"/v1/runs/{run['id']}/connection-token")).json()["token"]
    async with client(stack, token) as tok:
        # A read-only key's token reads, and cannot answer.
        assert (await tok.get(f"/v1/runs/{run['id']}")).status_code == 200
        resp = await tok.post(f"/v1/runs/{run['id']}/input", json={"content": "x"})
        assert_problem(resp, 403, "FORBIDDEN")
        # Revoking the key revokes the tokens it asked for.
        async with client(stack, admin) as api:
            assert (await api.delete(f"/v1/api-keys/{reader_id}")).status_code == 200
        assert_problem(await tok.get(f"/v1/runs/{run['id']}"), 401, "API_KEY_INVALID")
    async with client(stack, admin) as api:
        await api.post(f"/v1/runs/{run['id']}/cancel")
