"""The outbox pump on Postgres: told by the store when a delivery is inserted (migration
0012's trigger), it sweeps then, not five times a second; and a run's callback is
delivered through it on a Postgres stack."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import httpx
import psycopg
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from notifications.activities import OutboxActivities
from notifications.messages import PumpInput
from runyard.db.engine import Database, migrate
from runyard.db.tables import WebhookDelivery
from runyard.db.types import utcnow
from runyard.settings import Settings
from runyard.store.orgs import ensure_org
from tests.conftest import Keys, poll_until
from tests.fakes.receiver import Receiver
from tests.integration.test_webhooks import run_to_end
from tests.stack import Stack


class Starts:
    """What a sweep asks of Temporal's client: the delivery workflows it starts."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    async def start_workflow(self, _workflow: str, _arg: Any, *, id: str, **_: Any) -> None:
        self.ids.append(id)


async def add_deliveries(db: Database, org_id: str, count: int) -> list[str]:
    """``count`` deliveries, inserted in one transaction."""
    now = utcnow()
    rows = [
        WebhookDelivery(
            id="dlv_" + secrets.token_hex(6),
            org_id=org_id,
            kind="callback",
            url="http://receiver.invalid/",
            event_type="run.completed",
            message_id="msg_" + secrets.token_hex(6),
            created_at=now,
            updated_at=now,
        )
        for _ in range(count)
    ]
    async with db.write() as s:
        s.add_all(rows)
    return [row.id for row in rows]


async def add_delivery(db: Database, org_id: str) -> str:
    (delivery_id,) = await add_deliveries(db, org_id, 1)
    return delivery_id


async def started(db: Database, delivery_ids: list[str]) -> bool:
    """Whether every one of the deliveries is marked started."""
    async with db.session() as s:
        rows = [await s.get(WebhookDelivery, d) for d in delivery_ids]
    return all(row is not None and row.workflow_started for row in rows)


class Pump:
    """``pump_outbox`` running in this process on a store of the test's own, counting its
    sweeps and the delivery workflows they start. It sweeps without a notice only after
    an hour, so in a test only the trigger's notice (or a new LISTEN) starts a sweep."""

    def __init__(self, db: Database, tmp_path: Path) -> None:
        self.db = db
        self.sweeps = 0
        self.starts = Starts()
        self.acts = OutboxActivities(db, Settings(data_dir=tmp_path))
        sweep = self.acts._sweep

        async def counted() -> int:
            self.sweeps += 1
            return await sweep()

        self.acts._sweep = counted  # type: ignore[method-assign]

    async def __aenter__(self) -> Pump:
        env = ActivityEnvironment(client=cast(Client, self.starts))
        inp = PumpInput(seconds=300, every=0.05, sweep_every=3600)
        self.task = asyncio.create_task(env.run(self.acts.pump_outbox, inp))
        return self

    async def __aexit__(self, *_: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@asynccontextmanager
async def store(url: str) -> AsyncIterator[tuple[Database, str]]:
    """The migrated store at ``url`` and an organization in it."""
    migrate(url)
    db = Database(url)
    try:
        async with db.write() as s:
            org_id = (await ensure_org(s, "pump")).id
        yield db, org_id
    finally:
        await db.dispose()


async def test_the_postgres_pump_sweeps_when_a_delivery_is_inserted(
    own_postgres_url: str, tmp_path: Path
) -> None:
    async with store(own_postgres_url) as (db, org_id):
        before = await add_delivery(db, org_id)  # committed before the pump listens
        async with Pump(db, tmp_path) as pump:
            ids = pump.starts.ids
            await poll_until(until(lambda: ids == [before]), "the sweep once listening")
            await asyncio.sleep(1.0)
            assert pump.sweeps == 1  # idle: it swept every 0.05 s before it listened
            told = await add_delivery(db, org_id)
            await poll_until(until(lambda: ids == [before, told]), "a sweep when told")
            await poll_until(lambda: started(db, [before, told]), "the deliveries marked")
            assert pump.sweeps == 2


async def test_one_notice_starts_a_backlog_larger_than_a_sweep(
    own_postgres_url: str, tmp_path: Path
) -> None:
    async with store(own_postgres_url) as (db, org_id), Pump(db, tmp_path) as pump:
        await poll_until(until(lambda: pump.sweeps == 1), "the sweep once listening")
        backlog = await add_deliveries(db, org_id, 450)  # one notice; sweeps take 200
        await poll_until(until(lambda: len(pump.starts.ids) == 450), "the backlog started")
        assert sorted(pump.starts.ids) == sorted(backlog)
        await poll_until(lambda: started(db, backlog), "the backlog marked")


async def test_the_postgres_pump_listens_again_after_its_connection_dies(
    own_postgres_url: str, tmp_path: Path
) -> None:
    async with store(own_postgres_url) as (db, org_id), Pump(db, tmp_path) as pump:
        await poll_until(until(lambda: pump.sweeps == 1), "the sweep once listening")
        (first,) = listeners(own_postgres_url)
        with psycopg.connect(libpq(own_postgres_url), autocommit=True) as c:
            c.execute("SELECT pg_terminate_backend(%s)", (first,))
        await poll_until(
            until(lambda: listeners(own_postgres_url) not in ([], [first])), "a new LISTEN"
        )
        # One sweep while it could not listen, one once it listened again.
        await poll_until(until(lambda: pump.sweeps == 3), "the sweep once listening again")
        told = await add_delivery(db, org_id)
        await poll_until(until(lambda: told in pump.starts.ids), "a sweep when told")
        assert pump.sweeps == 4


async def test_a_callback_is_delivered_on_postgres(
    pg_stack: Stack, postgres_url: str, receiver: Receiver
) -> None:
    db = Database(postgres_url)
    key = await Keys(db).make("pg-hook-" + secrets.token_hex(3))
    await db.dispose()
    hook = "pg-hook-" + secrets.token_hex(4)
    async with httpx.AsyncClient(
        base_url=pg_stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as api:
        run = await run_to_end(api, callbackUrl=receiver.url(hook))
    (got,) = await asyncio.to_thread(receiver.wait_for, hook, 1)
    body = json.loads(got.body)
    assert body["id"] == run["id"] and body["status"] == "completed"


def until(cond: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return cond()

    return check


def libpq(url: str) -> str:
    """The store's URL as psycopg takes it."""
    return url.replace("+psycopg", "")


def listeners(url: str) -> list[int]:
    """The backends LISTENing for the pump in the test's own database (their pids)."""
    with psycopg.connect(libpq(url), autocommit=True) as c:
        rows = c.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'LISTEN runyard_outbox%'"
        ).fetchall()
    return [pid for (pid,) in rows]
