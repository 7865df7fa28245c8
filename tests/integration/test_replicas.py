"""Two API processes on one store (SQLite, then Postgres): one rate limit, one revocation."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runyard.db.engine import Database, migrate
from tests.conftest import Keys, async_db_url, stack_env
from tests.fakes.anthropic_server import FakeAnthropic
from tests.integration.test_api_errors import assert_problem
from tests.stack import Stack

LIMIT = 200


class Replicas:
    def __init__(self, env: dict[str, str], data: Path) -> None:
        migrate(async_db_url(env))
        self.env = env
        self.a, self.b = Stack(env, data / "logs-a"), Stack(env, data / "logs-b")
        self.a.start_api()
        self.b.start_api()

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()

    async def key(self, scopes: list[str] | None = None) -> str:
        db = Database(async_db_url(self.env))
        try:
            return await Keys(db).make("replicas-" + secrets.token_hex(4), scopes)
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
