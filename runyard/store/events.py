"""The event log: per run, ``seq`` is dense from 1 and every append is idempotent.

An append locks the run row (``FOR UPDATE`` on Postgres; ``BEGIN IMMEDIATE`` already
serialises writers on SQLite), skips events whose idempotency key is already stored (a
``fresh`` append, whose transaction just stored a row under a unique key of the same
write, instead fails on the unique index and rolls back), hands out ``last_seq + 1 …``
and bumps ``runs.last_seq`` in the same transaction. So a retried activity never writes
an event twice and a failed transaction never leaves a hole. Once a run has its terminal
event nothing more is appended: the terminal event is always the last one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, func, insert, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col

from runyard.db.tables import Run, RunEvent
from runyard.db.types import utcnow
from runyard.domain import TERMINAL_STATUSES
from runyard.errors import RunNotFound
from runyard.events import keys
from runyard.events.data import NewEvent as NewEvent
from runyard.store import notice

TERMINAL_EVENT_KEY = keys.TERMINAL
NOTIFY_CHANNEL = notice.CHANNEL

# Called in the append's transaction with the run's id and the events just written,
# (key, type, seq): what must be committed with an event, or not at all, hooks in here
# (the outbox of ``notifications`` registers itself when it is imported; it loads the run
# only for the events it wants). The core knows no feature.
AppendHook = Callable[[Session, str, Sequence[tuple[str, str, int]], datetime], object]
_append_hooks: list[AppendHook] = []


def add_append_hook(hook: AppendHook) -> None:
    """Run ``hook`` in every append's transaction from now on (once, however often it
    is added)."""
    if hook not in _append_hooks:
        _append_hooks.append(hook)


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_run(session: Session, run_id: str) -> Run | None:
    """Load the run row, locked for this transaction on Postgres."""
    stmt = select(Run).where(col(Run.id) == run_id)
    if is_postgres(session):
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalars().first()


def locked_run(session: Session, run_id: str) -> Run:
    """:func:`lock_run`, for a run that must exist."""
    run = lock_run(session, run_id)
    if run is None:
        raise RunNotFound(f"{run_id} is not in the store")
    return run


@dataclass
class RunHead:
    """What a turn's or a tool call's write needs of its run, read without the ORM: a
    ``Run`` object decodes every JSON column of the row (bench/cost.py)."""

    id: str
    org_id: str
    status: str
    last_seq: int
    usage: dict[str, Any]


# The per-cycle statements are built once: building one (and its cache key) cost several
# times what running it on SQLite does (a run's head: 270 µs built, 40 µs prebuilt).
_HEAD = select(
    col(Run.id), col(Run.org_id), col(Run.status), col(Run.last_seq), col(Run.usage)
).where(col(Run.id) == bindparam("b_run_id"))
_HEAD_FOR_UPDATE = _HEAD.with_for_update()
_SET_COLUMNS = update(Run).where(col(Run.id) == bindparam("b_run_id"))
# Attribute name -> column name (``metadata_`` is the column ``metadata``).
_RUN_COLUMNS = {a.key: a.columns[0].key for a in inspect(Run).column_attrs}
_STORED_KEYS = select(col(RunEvent.key)).where(
    col(RunEvent.run_id) == bindparam("b_run_id"),
    col(RunEvent.key).in_(bindparam("b_keys", expanding=True)),
)
_INSERT_EVENTS = insert(RunEvent)
# Postgres: the UPDATE of last_seq also sends the notice (one round trip, not two).
_SET_AND_NOTIFY = _SET_COLUMNS.returning(
    func.pg_notify(bindparam("b_channel"), bindparam("b_notice"))
)


def locked_head(session: Session, run_id: str) -> RunHead:
    """The run's :class:`RunHead`, locked for this transaction as :func:`lock_run` locks
    the row; for a run that must exist."""
    stmt = _HEAD_FOR_UPDATE if is_postgres(session) else _HEAD
    row = session.connection().execute(stmt, {"b_run_id": run_id}).first()
    if row is None:
        raise RunNotFound(f"{run_id} is not in the store")
    return RunHead(row.id, row.org_id, row.status, row.last_seq, row.usage or {})


def append_events(
    session: Session,
    run: Run | RunHead,
    events: Sequence[NewEvent],
    *,
    now: datetime | None = None,
    columns: dict[str, Any] | None = None,
    fresh: bool = False,
) -> list[int]:
    """Append ``events`` to ``run`` (locked by :func:`lock_run` or :func:`locked_head` in
    this transaction). ``columns``: more of the run's columns to set in the same
    ``UPDATE`` as ``last_seq`` (set even when every event was stored already).
    ``fresh``: this transaction already inserted a row under a unique key of the same
    write (the message of a turn or of a tool result), so none of ``events`` can be
    stored yet and they are not looked up; the unique index on (run, key) still refuses
    a duplicate, and the transaction with it.

    Returns the seqs written; events already stored under their key, and any event after
    the terminal one, are skipped.
    """
    if not events:
        if columns:
            set_columns(session, run, columns)
        return []
    keys = [e.key for e in events]
    # Plain statements, not the unit of work (the hottest write); they do not autoflush,
    # so objects added to the session before (a new run, a message) are written first.
    session.flush()
    conn = session.connection()
    existing: set[str] = set()
    if not fresh:
        stored = conn.execute(_STORED_KEYS, {"b_run_id": run.id, "b_keys": keys})
        existing.update(stored.scalars())
    if TERMINAL_EVENT_KEY not in keys and run.status in TERMINAL_STATUSES:
        if columns:
            set_columns(session, run, columns)
        return []
    now = now or utcnow()
    seq = run.last_seq
    rows: list[dict[str, Any]] = []
    appended: list[tuple[str, str, int]] = []
    for ev in events:
        if ev.key in existing:
            continue
        existing.add(ev.key)
        seq += 1
        appended.append((ev.key, ev.type, seq))
        rows.append(
            {
                "run_id": run.id,
                "seq": seq,
                "key": ev.key,
                "type": ev.type,
                "data": ev.data,
                "created_at": now,
            }
        )
    if rows:
        conn.execute(_INSERT_EVENTS, rows)
        # Delivered on commit only, so listeners never see an event that rolled back.
        note = notice.notice(run.id, rows) if is_postgres(session) else None
        set_columns(session, run, {**(columns or {}), "last_seq": seq}, notice=note)
        for hook in _append_hooks:
            hook(session, run.id, appended, now)
    elif columns:
        set_columns(session, run, columns)
    return [seq for _, _, seq in appended]


def set_columns(
    session: Session, run: Run | RunHead, values: dict[str, Any], *, notice: str | None = None
) -> None:
    """``UPDATE runs SET …`` for the locked ``run`` (``values`` by attribute name), and the
    same values on the object, without the ORM comparing or flushing them again.
    ``notice`` (Postgres): the same statement sends it on ``NOTIFY_CHANNEL``."""
    unknown = values.keys() - _RUN_COLUMNS.keys()
    if unknown:  # the statement would skip them silently (its SET comes from the params)
        raise KeyError(f"Run has no attribute {sorted(unknown)}")
    params = {"b_run_id": run.id, **{_RUN_COLUMNS[k]: v for k, v in values.items()}}
    if notice is None:
        session.connection().execute(_SET_COLUMNS, params)
    else:
        params.update(b_channel=NOTIFY_CHANNEL, b_notice=notice)
        session.connection().execute(_SET_AND_NOTIFY, params).all()
    for key, value in values.items():
        if isinstance(run, Run):
            set_committed_value(run, key, value)
        else:
            setattr(run, key, value)


async def list_events(
    session: AsyncSession,
    run_id: str,
    *,
    after_seq: int = 0,
    limit: int | None = None,
    types: Sequence[str] | None = None,
    exclude_types: Sequence[str] | None = None,
    after_time: datetime | None = None,
) -> list[RunEvent]:
    stmt = select(RunEvent).where(col(RunEvent.run_id) == run_id, col(RunEvent.seq) > after_seq)
    if types:
        stmt = stmt.where(col(RunEvent.type).in_(list(types)))
    if exclude_types:
        stmt = stmt.where(col(RunEvent.type).not_in(list(exclude_types)))
    if after_time is not None:
        stmt = stmt.where(col(RunEvent.created_at) > after_time)
    stmt = stmt.order_by(col(RunEvent.seq))
    if limit is not None:
        stmt = stmt.limit(limit)
    return list((await session.execute(stmt)).scalars())


class EventRow(Protocol):
    """What an event's JSON is made of: a ``RunEvent``, or a Core row of its columns."""

    @property
    def seq(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def data(self) -> dict[str, Any] | None: ...
    @property
    def created_at(self) -> datetime: ...


# The columns of an event's JSON, for reads that skip the ORM (``EventRow``).
EVENT_COLUMNS = (
    col(RunEvent.seq),
    col(RunEvent.type),
    col(RunEvent.data),
    col(RunEvent.created_at),
)


def event_json(ev: EventRow) -> dict[str, Any]:
    return {
        "seq": ev.seq,
        "type": ev.type,
        "data": ev.data or {},
        "createdAt": ev.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def first_seq(session: Session, run_id: str) -> int | None:
    """The lowest seq still stored for the run (older ones were purged by retention)."""
    stmt = select(func.min(col(RunEvent.seq))).where(col(RunEvent.run_id) == run_id)
    return session.execute(stmt).scalar()


async def purge_events(session: AsyncSession, older_than: datetime) -> int:
    """Delete events created before ``older_than``; returns how many."""
    result = await session.execute(delete(RunEvent).where(col(RunEvent.created_at) < older_than))
    return int(getattr(result, "rowcount", 0) or 0)
