"""Two API processes on one store (SQLite, then Postgres): one rate limit, one revocation."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard.db.engine import Database, migrate
from tests.conftest import Keys, async_db_url, poll_until, stack_env
from tests.fakes.anthropic_server import FakeAnthropic
from tests.integration.test_api_errors import assert_problem
from tests.stack import Stack

LIMIT = 200
STREAM_CAPS = {"TOKEN": 2, "KEY": 3, "ORG": 4}


class Replicas:
    def __init__(self, env: dict[str, str], data: Path) -> None:
        migrate(async_db_url(env))
        self.env = env
        self.a, self.b = Stack(env, data / "logs-a"), Stack(env, data / "logs-b")
        for stack in (self.a, self.b):
            stack.spawn_api()
        for stack in (self.a, self.b):
            stack.wait_for_api()

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()

    async def key(self, scopes: list[str] | None = None, org: str | None = None) -> str:
        db = Database(async_db_url(self.env))
        try:
            return await Keys(db).make(org or "replicas-" + secrets.token_hex(4), scopes)
        finally:
            await db.dispose()


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory,
    temporal_server: str,
    fake_anthropic: FakeAnthropic,
    postgres_url: str,
) -> Iterator[list[Replicas]]:
    started: list[Replicas] = []
    try:
        for store in ("sqlite", "postgres"):
            data = tmp_path_factory.mktemp(f"replicas-{store}")
            extra = {
                "RUNYARD_RATE_LIMIT_PER_MINUTE": str(LIMIT),
                "RUNYARD_API_KEY_CACHE_SECONDS": "10",
                **{f"RUNYARD_MAX_STREAMS_PER_{k}": str(n) for k, n in STREAM_CAPS.items()},
            }
            if store == "postgres":
                extra["RUNYARD_DATABASE_URL"] = postgres_url
            env = stack_env(data, temporal_server, fake_anthropic.base_url, **extra)
            started.append(Replicas(env, data))
        yield started
    finally:
        for r in started:
            r.stop()


def client(stack: Stack, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


async def _burst(r: Replicas) -> list[httpx.Response]:
    """150 requests to each replica at once, with one key."""
    key = await r.key()
    async with client(r.a, key) as a, client(r.b, key) as b:
        gate = asyncio.Semaphore(24)

        async def one(c: httpx.AsyncClient) -> httpx.Response:
            async with gate:
                return await c.get("/v1/usage")

        return list(await asyncio.gather(*(one(c) for _ in range(150) for c in (a, b))))


async def _limit_holds_in_all(r: Replicas) -> None:
    for _ in range(3):
        responses = await _burst(r)
        # One window (the minute did not turn during the burst), else try a fresh key.
        if len({resp.headers["x-ratelimit-reset"] for resp in responses}) == 1:
            break
    else:
        raise AssertionError("three bursts in a row straddled a minute")
    ok = [resp for resp in responses if resp.status_code == 200]
    refused = [resp for resp in responses if resp.status_code == 429]
    assert len(ok) == LIMIT and len(refused) == 300 - LIMIT, [x.status_code for x in responses]
    for resp in refused:
        assert_problem(resp, 429, "RATE_LIMIT_EXCEEDED")
        assert int(resp.headers["retry-after"]) >= 1
    remaining = sorted(int(resp.headers["x-ratelimit-remaining"]) for resp in ok)
    assert remaining == list(range(LIMIT)), "every admitted request got its own count"
    assert {resp.headers["x-ratelimit-limit"] for resp in responses} == {str(LIMIT)}


async def test_rate_limit_is_shared_by_replicas(replicas: list[Replicas]) -> None:
    await asyncio.gather(*(_limit_holds_in_all(r) for r in replicas))


async def _revocation_reaches_both(r: Replicas) -> None:
    admin = await r.key(["admin"])
    async with client(r.a, admin) as api:
        made = (await api.post("/v1/api-keys", json={"name": "victim"})).json()
    async with client(r.a, made["key"]) as a, client(r.b, made["key"]) as b:
        # Both replicas have checked the key (and cached it) before it is revoked.
        assert (await a.get("/v1/usage")).status_code == 200
        assert (await b.get("/v1/usage")).status_code == 200
        loop = asyncio.get_running_loop()
        revoked_at = loop.time()
        async with client(r.a, admin) as api:
            assert (await api.delete(f"/v1/api-keys/{made['id']}")).status_code == 200
        assert_problem(await a.get("/v1/usage"), 401, "API_KEY_INVALID")
        while True:
            sent = loop.time()
            resp = await b.get("/v1/usage")
            if resp.status_code != 200:
                break
            assert sent - revoked_at < 10, "the other replica still accepts the key after 10 s"
            await asyncio.sleep(0.25)
        assert_problem(resp, 401, "API_KEY_INVALID")


async def test_revoked_key_is_refused_by_both_within_10s(replicas: list[Replicas]) -> None:
    await asyncio.gather(*(_revocation_reaches_both(r) for r in replicas))


class Streams:
    """Event streams held open until the end of the block (or :meth:`close`)."""

    def __init__(self) -> None:
        self._open: list[tuple[Any, httpx.Response]] = []

    async def open(self, c: httpx.AsyncClient, run_id: str) -> httpx.Response:
        """A stream's answer: a 200 is held open (its headers read), anything else read."""
        cm = c.stream("GET", f"/v1/runs/{run_id}/events")
        resp = await cm.__aenter__()
        if resp.status_code != 200:
            await resp.aread()
            await cm.__aexit__(None, None, None)
            return resp
        self._open.append((cm, resp))
        return resp

    async def close(self, resp: httpx.Response) -> None:
        cm = next(cm for cm, r in self._open if r is resp)
        self._open = [(c, r) for c, r in self._open if r is not resp]
        await cm.__aexit__(None, None, None)

    async def __aenter__(self) -> Streams:
        return self

    async def __aexit__(self, *_: object) -> None:
        for cm, _resp in self._open:
            await cm.__aexit__(None, None, None)


def assert_capped(resp: httpx.Response, whose: str) -> None:
    assert resp.status_code == 429, f"a stream past the cap for {whose}: {resp.status_code}"
    assert_problem(resp, 429, "RATE_LIMIT_EXCEEDED")
    assert whose in resp.json()["detail"], resp.json()
    assert int(resp.headers["retry-after"]) >= 1


async def test_stream_caps_per_token_key_and_org(replicas: list[Replicas]) -> None:
    """Caps of 2 streams per run's tokens, 3 per key (with its tokens), 4 per organization,
    counted by each API process (docs/operations.md); other requests go on meanwhile."""
    r = replicas[0]  # the counts are the process's: the store does not matter
    org = "streams-" + secrets.token_hex(4)
    k1, k2 = await r.key(org=org), await r.key(org=org)
    async with client(r.a, k1) as a1, client(r.a, k2) as a2, Streams() as streams:
        run1, run2 = [
            (await a1.post("/v1/runs", json={"prompt": "p", "model": "scripted"})).json()["id"]
            for _ in range(2)
        ]
        token = (await a1.get(f"/v1/runs/{run1}/connection-token")).json()["token"]
        async with client(r.a, token) as t1, client(r.a, token) as t2, client(r.b, k2) as b2:
            held = [await streams.open(t1, run1) for _ in range(2)]
            assert [s.status_code for s in held] == [200, 200]
            assert_capped(await streams.open(t2, run1), "this run's connection tokens")
            assert (await streams.open(a1, run2)).status_code == 200  # k1: 2 by token + 1
            assert_capped(await streams.open(a1, run2), "this API key")
            assert (await streams.open(a2, run2)).status_code == 200  # the org's fourth
            assert_capped(await streams.open(a2, run2), "this organization")
            # Everything else goes on: health, lists, the events as JSON, another replica.
            assert (await a2.get(f"{r.a.api_url}/healthz")).status_code == 200
            assert (await a2.get("/v1/runs")).status_code == 200
            as_json = await a2.get(
                f"/v1/runs/{run2}/events", headers={"Accept": "application/json"}
            )
            assert as_json.status_code == 200 and as_json.json()[0]["seq"] == 1
            assert (await streams.open(b2, run2)).status_code == 200  # its own counts
            # A stream that ends gives its place back (to every cap it counted for).
            await streams.close(held[0])

            async def reopened() -> bool:
                resp = await streams.open(a2, run2)
                return resp.status_code == 200

            await poll_until(reopened, "a stream in the place of the closed one")
            assert_capped(await streams.open(t2, run1), "this organization")
    # (The queued runs stay: these replicas have no worker to cancel them.)
