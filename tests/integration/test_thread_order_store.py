"""The thread's order on SQLite and on Postgres (``runyard/runs/thread_order.py``): 30
concurrent creates in one thread, each its own transaction as on separate API replicas,
leave exactly one open run under ``reject`` and one dense line under ``enqueue``, and the
line starts in order as its runs end."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from sqlalchemy.orm import Session

from runyard.db.engine import Database
from runyard.db.tables import Run, Thread
from runyard.db.types import utcnow
from runyard.domain import RunStatus
from runyard.ids import new_id
from runyard.runs.thread_order import Placement, Strategy, ThreadBusy, next_waiting, place
from runyard.store.orgs import ensure_org

N = 30


async def new_thread(db: Database) -> tuple[str, str]:
    async with db.write() as s:
        org = await ensure_org(s, "org-" + new_id("x", 6))
        now = utcnow()
        thread = Thread(id=new_id("thr"), org_id=org.id, created_at=now, updated_at=now)
        s.add(thread)
    return org.id, thread.id


async def create(db: Database, org_id: str, thread_id: str, strategy: Strategy) -> Placement:
    """What ``RunService.create`` does in its transaction, without the workflow."""
    now = utcnow()
    run = Run(
        id=new_id("run"),
        org_id=org_id,
        status=RunStatus.QUEUED,
        prompt="p",
        model="scripted",
        thread_id=thread_id,
        workflow_id="w",
        created_at=now,
        updated_at=now,
    )

    def insert(s: Session) -> Placement:
        placement = place(s, run, thread_id, strategy, now)
        s.add(run)
        s.flush()
        if placement.row is not None:
            s.add(placement.row)
        if not placement.waits:
            run.status = RunStatus.RUNNING  # started at once
        return placement

    placement = await db.transact(insert)
    assert placement.row is None or placement.row.run_id == run.id
    return placement


async def set_status(db: Database, run_id: str, status: RunStatus) -> None:
    def change(s: Session) -> None:
        run = s.get(Run, run_id)
        assert run is not None
        run.status = status

    await db.transact(change)


async def test_reject_leaves_one_open_run(db: Database) -> None:
    org_id, thread_id = await new_thread(db)
    tries = [create(db, org_id, thread_id, Strategy.REJECT) for _ in range(N)]
    results = await asyncio.gather(*tries, return_exceptions=True)
    won = [r for r in results if isinstance(r, Placement)]
    busy = [r for r in results if isinstance(r, ThreadBusy)]
    assert len(won) == 1 and len(busy) == N - 1, results
    assert len({b.active_run_id for b in busy}) == 1


async def test_enqueue_makes_one_line_that_starts_in_order(db: Database) -> None:
    org_id, thread_id = await new_thread(db)
    tries = [create(db, org_id, thread_id, Strategy.ENQUEUE) for _ in range(N)]
    placements = await asyncio.gather(*tries)
    rows = sorted((p.row for p in placements if p.row is not None), key=lambda r: r.position)
    assert [r.position for r in rows] == list(range(1, N + 1))
    assert rows[0].queued_behind is None  # the thread was free for the first
    assert all(b.queued_behind == a.run_id for a, b in itertools.pairwise(rows))

    def pick(s: Session) -> str | None:
        return next_waiting(s, thread_id)

    assert await db.read(pick) is None  # the first is running
    for before, after in itertools.pairwise(rows[:5]):
        await set_status(db, before.run_id, RunStatus.COMPLETED)
        assert await db.read(pick) == after.run_id
        await set_status(db, after.run_id, RunStatus.RUNNING)
        assert await db.read(pick) is None


@pytest.mark.parametrize("strategy", [Strategy.INTERRUPT, Strategy.ROLLBACK])
async def test_interrupt_goes_before_the_runs_it_supersedes(
    db: Database, strategy: Strategy
) -> None:
    org_id, thread_id = await new_thread(db)
    first = await create(db, org_id, thread_id, Strategy.ENQUEUE)
    queued = await create(db, org_id, thread_id, Strategy.ENQUEUE)
    new = await create(db, org_id, thread_id, strategy)
    assert first.row and queued.row and new.row
    assert new.supersedes == [first.row.run_id, queued.row.run_id]
    assert new.row.supersedes == first.row.run_id  # the one under way: its work is inherited
    assert new.queued_behind == queued.row.run_id
    await set_status(db, first.row.run_id, RunStatus.CANCELLED)
    # The superseded queued run is passed over (its cancel is on its way).
    assert await db.read(lambda s: next_waiting(s, thread_id)) == new.row.run_id
