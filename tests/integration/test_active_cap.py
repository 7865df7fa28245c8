"""The active-run cap holds under concurrency, on SQLite and on Postgres: of 30
simultaneous starts in an organization whose cap is 10, exactly 10 start.

A second API process with a cap of 10 joins the stack's store and workers (the cap
travels with the run's workflow input), so the shared stacks keep their own high cap.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from runyard.db.engine import Database
from tests.conftest import Keys, async_db_url, script
from tests.stack import Stack

CAP = 10
HOLD = script({"ask": "hold on"}, {"text": "done"})  # waits for input: stays active


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def capped(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The capped API process, one per store for the module: the cap is per organization
    and every test makes an organization of its own (``client``)."""
    stack: Stack = request.getfixturevalue("stack" if request.param == "sqlite" else "pg_stack")
    api = Stack(
        {**stack.env, "RUNYARD_MAX_ACTIVE_RUNS": str(CAP)}, tmp_path_factory.mktemp("cap-logs")
    )
    api.start_api()
    yield api
    api.stop()


@pytest.fixture
async def client(capped: Stack) -> AsyncIterator[httpx.AsyncClient]:
    db = Database(async_db_url(capped.env))
    key = await Keys(db).make("cap-" + secrets.token_hex(4))
    await db.dispose()
    async with httpx.AsyncClient(
        base_url=capped.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as client:
        yield client


async def cancel_all(client: httpx.AsyncClient, ids: list[str]) -> None:
    await asyncio.gather(*(client.post(f"/v1/runs/{i}/cancel") for i in ids))


async def test_concurrent_create_with_start(client: httpx.AsyncClient) -> None:
    body = {"prompt": HOLD, "model": "scripted", "start": True}
    answers = await asyncio.gather(*(client.post("/v1/runs", json=body) for _ in range(30)))
    codes = Counter(a.status_code for a in answers)
    assert codes == {201: CAP, 429: 30 - CAP}, codes
    refused = [a.json() for a in answers if a.status_code == 429]
    assert {p["type"] for p in refused} == {"CONCURRENT_RUN_LIMIT_EXCEEDED"}
    assert all(a.headers.get("Retry-After") for a in answers if a.status_code == 429)
    started = [a.json()["id"] for a in answers if a.status_code == 201]
    assert {a.json()["status"] for a in answers if a.status_code == 201} == {"pending"}
    listed = (await client.get("/v1/runs", params={"limit": 100})).json()
    assert listed["pagination"]["total"] == CAP  # a refused create leaves no run behind
    await cancel_all(client, started)


async def test_concurrent_execs(client: httpx.AsyncClient) -> None:
    body = {"prompt": HOLD, "model": "scripted"}
    runs = [(await client.post("/v1/runs", json=body)).json()["id"] for _ in range(30)]
    answers = await asyncio.gather(*(client.post(f"/v1/runs/{r}/exec") for r in runs))
    codes = Counter(a.status_code for a in answers)
    assert codes == {202: CAP, 429: 30 - CAP}, codes
    statuses = Counter([(await client.get(f"/v1/runs/{r}")).json()["status"] for r in runs])
    assert statuses[("queued")] == 30 - CAP  # the refused stay queued and may exec later
    await cancel_all(client, runs)


async def test_concurrent_runs_in_one_thread(client: httpx.AsyncClient) -> None:
    """Issue 23, item 11: of 8 simultaneous runs in one thread exactly one starts; the
    others get 409 CONFLICT and leave no run behind."""
    thread = (await client.post("/v1/threads", json={})).json()["id"]
    body = {"prompt": HOLD, "model": "scripted"}
    answers = await asyncio.gather(
        *(client.post(f"/v1/threads/{thread}/runs", json=body) for _ in range(8))
    )
    codes = Counter(a.status_code for a in answers)
    assert codes == {201: 1, 409: 7}, [a.text for a in answers]
    assert {a.json()["type"] for a in answers if a.status_code == 409} == {"CONFLICT"}
    runs = (await client.get(f"/v1/threads/{thread}/runs")).json()["data"]
    assert [r["id"] for r in runs] == [a.json()["runId"] for a in answers if a.status_code == 201]
    await cancel_all(client, [r["id"] for r in runs])
