"""A thread's runs in order: ``multitaskStrategy`` on ``POST /v1/threads/{id}/runs``.

One place decides the order: the thread's row, locked by the create's transaction
(Postgres ``FOR UPDATE`` through the update; SQLite's one writer, ``BEGIN IMMEDIATE``).
Every create in a thread, from any API replica, checks the thread's open runs and inserts
its own under that lock, so they are placed one after the other:

- ``reject`` (the default): a thread with an open run refuses the new one (409
  ``CONFLICT`` with ``activeRunId``).
- ``enqueue``: the new run is created ``queued`` behind the last one (``queuedBehind``);
  when the runs before it have ended, :func:`next_waiting` names it to be started.
- ``interrupt``: as enqueue, and every open run of the thread is superseded: it stops at
  its next turn boundary and ends ``cancelled`` with ``error.code: RUN_SUPERSEDED``. The
  new run continues the conversation of the run it superseded (:func:`inherited_runs`).
- ``rollback``: as interrupt, but the superseded run's work is not inherited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.db.tables import Run, Thread, ThreadRunOrder
from runyard.domain import ACTIVE_STATUSES, OPEN_STATUSES, RunStatus
from runyard.errors import Conflict, ThreadNotFound


class Strategy(StrEnum):
    REJECT = "reject"
    ENQUEUE = "enqueue"
    INTERRUPT = "interrupt"
    ROLLBACK = "rollback"


class ThreadBusy(Conflict):
    """``reject``: the thread has an open run."""

    def __init__(self, message: str, active_run_id: str) -> None:
        super().__init__(message)
        self.active_run_id = active_run_id


@dataclass(frozen=True)
class Placement:
    """Where a new run went in its thread."""

    strategy: Strategy
    position: int = 0
    queued_behind: str | None = None  # set: the run waits (created queued, started later)
    supersedes: list[str] = field(default_factory=list)  # open runs to stop, oldest first
    row: ThreadRunOrder | None = None  # to insert once the run is

    @property
    def waits(self) -> bool:
        return self.queued_behind is not None


def lock_thread(s: Session, org_id: str, thread_id: str, now: datetime) -> None:
    """Take the thread's row for this transaction (or raise ``ThreadNotFound``)."""
    claimed = s.execute(
        update(Thread)
        .where(col(Thread.id) == thread_id, col(Thread.org_id) == org_id)
        .values(updated_at=now)
    )
    if claimed.rowcount == 0:  # type: ignore[attr-defined]
        raise ThreadNotFound(f"no thread {thread_id}")


def _open_runs(s: Session, thread_id: str) -> list[tuple[str, str]]:
    """The thread's open runs (id, status), in the thread's order: by position where
    they have one (created with a strategy), else by creation."""
    rows = s.execute(
        select(col(Run.id), col(Run.status), col(ThreadRunOrder.position))
        .outerjoin(ThreadRunOrder, col(ThreadRunOrder.run_id) == col(Run.id))
        .where(col(Run.thread_id) == thread_id, col(Run.status).in_(list(OPEN_STATUSES)))
        .order_by(col(Run.created_at), col(Run.id))
    ).all()
    by_creation = {r[0]: i for i, r in enumerate(rows)}
    ordered = sorted(rows, key=lambda r: (r[2] if r[2] is not None else -1, by_creation[r[0]]))
    return [(r[0], r[1]) for r in ordered]


def place(s: Session, run: Run, thread_id: str, strategy: Strategy, now: datetime) -> Placement:
    """Claim the thread for ``run`` under ``strategy`` (inside the create's transaction,
    before ``run`` is inserted; the caller inserts ``row`` after it)."""
    lock_thread(s, run.org_id, thread_id, now)
    open_runs = _open_runs(s, thread_id)
    if strategy == Strategy.REJECT:
        if open_runs:
            busy = next((r for r, st in open_runs if st in ACTIVE_STATUSES), open_runs[0][0])
            raise ThreadBusy(f"thread {thread_id} already has an open run, {busy}", busy)
        return Placement(strategy)
    last = s.execute(
        select(func.max(col(ThreadRunOrder.position))).where(
            col(ThreadRunOrder.thread_id) == thread_id
        )
    ).scalar()
    position = (last or 0) + 1
    behind = open_runs[-1][0] if open_runs else None
    supersedes = (
        [r for r, _ in open_runs] if strategy in (Strategy.INTERRUPT, Strategy.ROLLBACK) else []
    )
    # The run it continues: the one under way (the others never ran).
    active = next((r for r, st in open_runs if st != RunStatus.QUEUED), None)
    row = ThreadRunOrder(
        run_id=run.id,
        thread_id=thread_id,
        position=position,
        strategy=strategy,
        queued_behind=behind,
        supersedes=active if supersedes else None,
        created_at=now,
    )
    return Placement(strategy, position, behind, supersedes, row)


def next_waiting(s: Session, thread_id: str) -> str | None:
    """The run to start now in the thread, if any: none while one of its runs is active;
    else the first waiting run (created behind another, still ``queued``) in order. Runs
    placed before the latest ``interrupt``/``rollback`` are left: that run superseded
    them (their cancel is on its way). Called with the thread's row locked."""
    active = s.execute(
        select(col(Run.id))
        .where(col(Run.thread_id) == thread_id, col(Run.status).in_(list(ACTIVE_STATUSES)))
        .limit(1)
    ).scalar()
    if active is not None:
        return None
    cut = s.execute(
        select(func.max(col(ThreadRunOrder.position))).where(
            col(ThreadRunOrder.thread_id) == thread_id,
            col(ThreadRunOrder.strategy).in_([Strategy.INTERRUPT, Strategy.ROLLBACK]),
        )
    ).scalar()
    found: str | None = s.execute(
        select(col(ThreadRunOrder.run_id))
        .join(Run, col(Run.id) == col(ThreadRunOrder.run_id))
        .where(
            col(ThreadRunOrder.thread_id) == thread_id,
            col(ThreadRunOrder.queued_behind).is_not(None),
            col(ThreadRunOrder.position) >= (cut or 0),
            col(Run.status) == RunStatus.QUEUED,
        )
        .order_by(col(ThreadRunOrder.position))
        .limit(1)
    ).scalar()
    return found


def inherited_runs(s: Session, thread_id: str) -> set[str]:
    """Runs of the thread an ``interrupt`` superseded: their conversation goes on in the
    run that superseded them, though they ended ``cancelled``."""
    rows = s.execute(
        select(col(ThreadRunOrder.supersedes)).where(
            col(ThreadRunOrder.thread_id) == thread_id,
            col(ThreadRunOrder.strategy) == Strategy.INTERRUPT,
            col(ThreadRunOrder.supersedes).is_not(None),
        )
    ).scalars()
    return {r for r in rows if r}


def order_of(s: Session, run_id: str) -> ThreadRunOrder | None:
    return s.get(ThreadRunOrder, run_id)
