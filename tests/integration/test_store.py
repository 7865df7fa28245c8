"""The store on SQLite and on Postgres: dense, idempotent event appends; terminal wins once."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.db.engine import Database
from runyard.db.tables import Artifact, Run
from runyard.db.types import utcnow
from runyard.domain import RunStatus
from runyard.ids import new_id
from runyard.outputs import record_outputs
from runyard.store.events import NewEvent, append_events, list_events, lock_run, locked_run
from runyard.store.orgs import create_key, ensure_org, find_key
from runyard.store.runs import finish, set_status


async def new_run(db: Database) -> Run:
    async with db.write() as s:
        org = await ensure_org(s, "org-" + new_id("x", 6))
        now = utcnow()
        run = Run(
            id=new_id("run"),
            org_id=org.id,
            status="running",
            prompt="p",
            model="scripted",
            workflow_id="w",
            created_at=now,
            updated_at=now,
        )
        s.add(run)
    return run


async def append(db: Database, run_id: str, *events: NewEvent) -> list[int]:
    def add(s: Session) -> list[int]:
        run = lock_run(s, run_id)
        assert run is not None
        return append_events(s, run, list(events))

    return await db.transact(add)


async def test_appends_are_dense_and_idempotent(db: Database) -> None:
    run = await new_run(db)
    assert await append(db, run.id, NewEvent("a", "x"), NewEvent("b", "x")) == [1, 2]
    assert await append(db, run.id, NewEvent("b", "x"), NewEvent("c", "x")) == [
        3
    ]  # b again: skipped
    assert await append(db, run.id, NewEvent("a", "x")) == []
    async with db.session() as s:
        events = await list_events(s, run.id)
    assert [(e.seq, e.key) for e in events] == [(1, "a"), (2, "b"), (3, "c")]
    assert events[0].created_at.tzinfo is not None


async def test_concurrent_appenders_never_collide(db: Database) -> None:
    run = await new_run(db)

    async def writer(w: int) -> None:
        for i in range(8):
            await append(db, run.id, NewEvent(f"w{w}.{i}", "x"), NewEvent(f"w{w}.{i}", "x"))
            await append(db, run.id, NewEvent(f"w{w}.{i}", "x"))  # a "retry"

    await asyncio.gather(*(writer(w) for w in range(8)))
    async with db.session() as s:
        events = await list_events(s, run.id)
    assert [e.seq for e in events] == list(range(1, 65))
    assert len({e.key for e in events}) == 64


async def test_terminal_event_is_last_and_single(db: Database) -> None:
    run = await new_run(db)
    await append(db, run.id, NewEvent("a", "x"))

    def cancel(s: Session) -> bool:
        locked = lock_run(s, run.id)
        assert locked is not None
        return finish(s, locked, RunStatus.CANCELLED, now=utcnow())

    def late(s: Session) -> tuple[bool, bool]:
        locked = lock_run(s, run.id)
        assert locked is not None
        return (
            finish(s, locked, RunStatus.COMPLETED, now=utcnow()),  # the first terminal wins
            set_status(
                s, locked, RunStatus.RUNNING, allowed_from={RunStatus.RUNNING}, now=utcnow()
            ),
        )

    assert await db.transact(cancel)
    assert await db.transact(late) == (False, False)
    assert await append(db, run.id, NewEvent("late", "tool.result")) == []
    async with db.session() as s:
        events = await list_events(s, run.id)
        stored = await s.get(Run, run.id)
    assert [e.type for e in events] == ["x", "run.cancelled"]
    assert stored is not None and stored.status == "cancelled" and stored.cancelled_at is not None
    assert stored.last_seq == 2


async def test_an_ended_run_takes_no_output_but_its_patch(db: Database) -> None:
    """A tool call or a sweep finishing after the cancel records no branch, pull request,
    issue or artifact; the changes.patch the ending keeps is the one thing still added."""
    run = await new_run(db)
    branch: dict[str, Any] = {"type": "branch", "name": "late", "sha": "a" * 40, "url": "u"}
    patch: dict[str, Any] = {
        "type": "patch",
        "artifactId": "art_p",
        "files": 1,
        "insertions": 1,
        "deletions": 0,
    }

    def artifact(art_id: str) -> Artifact:
        return Artifact(
            id=art_id,
            org_id=run.org_id,
            run_id=run.id,
            name=art_id,
            storage_path=f"p/{art_id}",
            size=1,
            content_type="text/plain",
            sha256="0" * 64,
            created_at=utcnow(),
        )

    def cancel(s: Session) -> None:
        locked = locked_run(s, run.id)
        finish(s, locked, RunStatus.CANCELLED, now=utcnow())

    def late(s: Session) -> None:
        locked = locked_run(s, run.id)
        outputs: list[dict[str, Any]] = [
            branch,
            {"type": "pr", "number": 1, "url": "u", "branch": "late"},
            patch,
        ]
        record_outputs(s, locked, outputs, "late", [artifact("art_x"), artifact("art_p")])

    await db.transact(cancel)
    await db.transact(late)
    async with db.session() as s:
        stored = await s.get(Run, run.id)
        arts = await s.execute(select(col(Artifact.id)).where(col(Artifact.run_id) == run.id))
    assert stored is not None and stored.outputs == [patch]
    assert list(arts.scalars()) == ["art_p"]


async def test_a_failed_transaction_leaves_nothing(db: Database) -> None:
    run = await new_run(db)

    def fails(s: Session) -> None:
        append_events(s, locked_run(s, run.id), [NewEvent("lost", "x")])
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await db.transact(fails)
    assert await append(db, run.id, NewEvent("kept", "x")) == [1]  # no hole where "lost" was


async def test_a_cancelled_callers_transaction_ends_before_the_next_one(db: Database) -> None:
    """A transaction's thread cannot be stopped: its cancelled caller waits until it has
    ended (on SQLite holding the write lock), so the caller's next writer never overlaps
    it. (On SQLite a transaction runs on a thread when another process holds the lock,
    as here; on the loop's thread it is never cut off, as nothing else runs meanwhile.)"""
    run = await new_run(db)
    seen: list[str] = []
    if db.is_sqlite:
        holder = sqlite3.connect(str(make_url(db.url).database), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(0.02, holder.close)  # rolls back

    def slow(s: Session) -> None:
        time.sleep(0.3)
        append_events(s, locked_run(s, run.id), [NewEvent("slow", "x")])
        seen.append("slow committed")

    def after(s: Session) -> int:
        seen.append("next began")
        return locked_run(s, run.id).last_seq

    first = asyncio.create_task(db.transact(slow))
    await asyncio.sleep(0.05)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert seen == ["slow committed"]  # the cancel waited for the thread
    assert await db.transact(after) == 1
    assert seen == ["slow committed", "next began"]


async def test_data_version_moves_with_each_commit(db: Database) -> None:
    """SQLite's change counter, which the API's event hub polls: a commit by any other
    connection moves it, and nothing else does."""
    if not db.is_sqlite:
        assert db.data_version() is None  # Postgres: LISTEN/NOTIFY instead
        return
    run = await new_run(db)
    before = db.data_version()
    assert before is not None and db.data_version() == before  # nothing committed
    await append(db, run.id, NewEvent("x", "x"))
    after = db.data_version()
    assert after is not None and after != before
    assert db.data_version() == after


async def test_keys_and_filters(db: Database) -> None:
    async with db.write() as s:
        org = await ensure_org(s, "keys-org")
        again = await ensure_org(s, "keys-org")
        raw, row = await create_key(s, org.id, ["runs:read"])
    assert again.id == org.id and raw.startswith("ry_live_") and row.key_hash != raw
    found = await db.read(lambda s: find_key(s, raw))
    assert found is not None and found.org_id == org.id
    assert await db.read(lambda s: find_key(s, raw + "x")) is None
    run = await new_run(db)
    await append(
        db,
        run.id,
        NewEvent("1", "message.delta"),
        NewEvent("2", "tool.call"),
        NewEvent("3", "message.delta"),
    )
    async with db.session() as s:
        deltas = await list_events(s, run.id, types=["message.delta"])
        others = await list_events(s, run.id, exclude_types=["message.delta"], after_seq=1)
        limited = await list_events(s, run.id, limit=1, after_time=datetime(2000, 1, 1, tzinfo=UTC))
    assert [e.seq for e in deltas] == [1, 3] and [e.seq for e in others] == [2]
    assert [e.seq for e in limited] == [1]


async def test_nothing_stored_is_non_finite(db: Database) -> None:
    """Issue 23, item 14: a NaN or Infinity handed to the store is written as null, on
    SQLite and Postgres; one written before this rule (SQLite took it) reads as null."""
    run = await new_run(db)
    data = {"input": {"t": float("nan"), "l": [float("inf"), 1.5]}}
    await append(db, run.id, NewEvent("a", "tool.call", data))
    if db.is_sqlite:

        def legacy(s: Session) -> None:
            s.execute(
                text(
                    "INSERT INTO run_events (run_id, seq, key, type, data, created_at) "
                    "VALUES (:r, 2, 'old', 'tool.call', '{\"t\": NaN}', :now)"
                ),
                {"r": run.id, "now": utcnow()},
            )

        await db.transact(legacy)
    async with db.session() as s:
        events = await list_events(s, run.id)
    assert events[0].data == {"input": {"t": None, "l": [None, 1.5]}}
    assert all(e.data == {"t": None} for e in events[1:])
