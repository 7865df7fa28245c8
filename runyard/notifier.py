"""One event hub per API process: streams wait on it instead of polling the store.

Change detection. Postgres: the transaction that appends events also runs
``pg_notify``; one connection per process LISTENs. SQLite: one shared loop asks SQLite's
change counter each tick and, only when something was committed, reads
``max(run_events.id)`` and which runs got events (one read, however many streams are
open).

Fan-out. For each watched run the hub keeps a contiguous tail of recent events, already
encoded, refreshed with one query per changed run; it then wakes that run's streams,
which read the tail. A thousand streams on one run cost one query per change, not a
thousand. A stream that is behind the tail reads the store itself.

Pings. Every ``ping_seconds`` the hub wakes every subscriber with ``pinged`` set, and
each stream writes a ping comment (one timer for the process, where a timeout per wait
cost a timer per stream and wake: 12% of the API's time with 500 streams); a lost
notification costs at most one ping interval.

The store. A stream holds no store connection while it waits. The first stream of a run
seeds the run's tail (:meth:`EventNotifier.seed`, one read for all of them), and the
reads a stream still makes on its own (its run's status, events behind the tail) go
through :meth:`EventNotifier.read`: at most ``stream_reads`` at a time for all of the
process's streams, so that a burst of streams queues behind its own gate instead of
taking every connection and reader thread of the store from health checks and other
requests (1,800 streams opened at once made ``/healthz`` fail and another
organization's list wait 12 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from functools import partial
from typing import Any, TypeVar

import structlog
from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.db.engine import Database
from runyard.db.tables import Run, RunEvent
from runyard.domain import TERMINAL_STATUSES
from runyard.store.events import EVENT_COLUMNS, NOTIFY_CHANNEL, EventRow, event_json
from runyard.store.notice import Announced, read_notice

log = structlog.get_logger("runyard.notifier")
T = TypeVar("T")
_TAIL = 1000  # events kept per watched run
# Store reads in flight for all of a process's streams together: fewer than the store's
# pool (SQLite: 2 reader threads and 20 connections; Postgres: 8 and 30) keeps some for
# everything else, while a stream's read (a run by id, a page of events) takes about a
# millisecond.
STREAM_READS = 2


@dataclass(frozen=True)
class Cached:
    seq: int
    type: str
    json: dict[str, Any]
    frame: bytes  # the SSE frame, encoded once for every stream
    created: float = 0.0  # the event's commit time (epoch seconds), for the delivery lag


def encode(ev: EventRow) -> Cached:
    body = event_json(ev)
    data = json.dumps(body, separators=(",", ":"))
    frame = f"id: {ev.seq}\nevent: {ev.type}\ndata: {data}\n\n".encode()
    created = ev.created_at.replace(tzinfo=ev.created_at.tzinfo or UTC).timestamp()
    return Cached(ev.seq, ev.type, body, frame, created)


@dataclass
class _Tail:
    events: list[Cached] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The run's (status, last_seq) as the last ping read it; None: the run is not stored.
    state: tuple[str, int] | None = ("", 0)
    seeded: bool = False  # the newest events were read once (by seed() or changed())

    def after(self, cursor: int) -> list[Cached] | None:
        """Events after ``cursor``, or None when the tail does not reach back that far."""
        if not self.events or self.events[0].seq > cursor + 1:
            return None
        return self.events[cursor + 1 - self.events[0].seq :]


class Subscription:
    def __init__(self, hub: EventNotifier, run_id: str) -> None:
        self.hub, self.run_id = hub, run_id
        self.event = asyncio.Event()
        self.pinged = False

    def clear(self) -> None:
        """Call before reading, so a change after the read still wakes ``wait``."""
        self.event.clear()

    def ended(self, cursor: int) -> bool:
        """:func:`nothing_more` for this stream, as of the last ping."""
        tail = self.hub._tails.get(self.run_id)
        return tail is not None and nothing_more(tail.state, cursor)

    def cached(self, cursor: int) -> list[Cached] | None:
        tail = self.hub._tails.get(self.run_id)
        return None if tail is None else tail.after(cursor)

    async def wait(self) -> bool:
        """Until a change or the hub's ping: True for a change, False for a ping."""
        await self.event.wait()
        pinged, self.pinged = self.pinged, False
        return not pinged

    def close(self) -> None:
        self.hub._remove(self)


class EventNotifier:
    def __init__(
        self,
        db: Database,
        *,
        ping_seconds: float = 15.0,
        poll_interval: float = 0.02,
        stream_reads: int = STREAM_READS,
    ) -> None:
        self.db = db
        self.ping_seconds = ping_seconds
        self.poll_interval = poll_interval
        self._reads = asyncio.Semaphore(stream_reads)
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._tails: dict[str, _Tail] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # The server is stopping: streams end (``close_streams``).
        self.closing = False

    def subscribe(self, run_id: str) -> Subscription:
        sub = Subscription(self, run_id)
        self._subs[run_id].add(sub)
        self._tails.setdefault(run_id, _Tail())
        return sub

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.run_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.run_id]
                self._tails.pop(sub.run_id, None)

    async def read(self, fn: Callable[[Session], T]) -> T:
        """A stream's own read of the store, through the process's gate for streams."""
        async with self._reads:
            return await self.db.read(fn)

    async def read_core(self, fn: Callable[[Connection], T]) -> T:
        """:meth:`read` on a plain connection (``Database.read_core``)."""
        async with self._reads:
            return await self.db.read_core(fn)

    async def events_after(self, run_id: str, cursor: int) -> list[Cached]:
        """A stream's page of events after ``cursor``, from the store (gated)."""
        rows = await self.read_core(partial(_events_after, run_id=run_id, last=cursor))
        return [encode(r) for r in rows]

    async def seed(self, run_id: str) -> None:
        """Read the run's newest events into its tail, unless that was done: the first of
        a run's streams reads them for all the others."""
        tail = self._tails.get(run_id)
        if tail is None or tail.seeded:
            return
        async with tail.lock:
            if tail.seeded or self._tails.get(run_id) is not tail:
                return
            rows = await self.read_core(partial(_events_after, run_id=run_id, last=None))
            if not tail.events:  # else changed() got there first, with the same rows
                tail.events = [encode(r) for r in rows]
            tail.seeded = True

    async def changed(self, run_id: str, announced: list[Announced] | None = None) -> None:
        """Bring the run's tail up to date, then wake its streams: with the events a
        Postgres notice carried (``announced``) when they follow the tail, else with one
        query."""
        tail = self._tails.get(run_id)
        if tail is None:
            return
        async with tail.lock:
            last = tail.events[-1].seq if tail.events else None
            fresh = [e for e in announced or () if last is None or e.seq > last]
            rows: list[EventRow]
            if announced and last is not None and (not fresh or fresh[0].seq == last + 1):
                rows = list(fresh)  # nothing new, or exactly what follows: no read
            else:
                read = partial(_events_after, run_id=run_id, last=last)
                # A change's few new events, by index: on SQLite, on the loop's thread. A
                # tail's first read (up to its whole length) goes to a reader thread.
                rows = await (
                    self.db.read_inline(read) if last is not None else self.db.read_core(read)
                )
            if rows and last is not None and rows[0].seq != last + 1:
                tail.events = []  # never keep a tail with a hole; streams read the store
            tail.events.extend(encode(r) for r in rows)
            del tail.events[:-_TAIL]
            tail.seeded = tail.seeded or last is None
        self.wake(run_id)

    def wake(self, run_id: str) -> None:
        for sub in self._subs.get(run_id, ()):
            sub.event.set()

    def close_streams(self) -> None:
        """The server is stopping: every stream ends now, and any opened later at once
        (their clients resume with ``Last-Event-ID``)."""
        self.closing = True
        for run_id in list(self._subs):
            self.wake(run_id)

    def wake_all(self) -> None:
        for run_id in list(self._subs):
            self._tails[run_id] = _Tail()  # re-seed: we may have missed changes
            self.wake(run_id)

    async def start(self) -> None:
        loop = self._listen if not self.db.is_sqlite else self._poll
        self._tasks = [
            asyncio.create_task(loop(), name="event-notifier"),
            asyncio.create_task(self._ping(), name="event-notifier-ping"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _ping(self) -> None:
        """Every interval: each watched run's status, read once for all its streams (a
        read per stream, all at the same moment, stalled 500 streams for seconds), then
        a ping for every stream."""
        while True:
            await asyncio.sleep(self.ping_seconds)
            for run_id, tail in list(self._tails.items()):
                try:
                    tail.state = await self.db.read_inline(partial(run_state, run_id=run_id))
                except Exception as exc:  # the streams ping on, and look again next time
                    log.warning("notifier.status_failed", run_id=run_id, error=str(exc))
            for subs in list(self._subs.values()):
                for sub in subs:
                    sub.pinged = True
                    sub.event.set()

    async def _poll(self) -> None:
        """SQLite: each tick, ``data_version`` tells whether anything was committed since
        the last look (microseconds, on this thread); only then one read of the newest
        event id and the runs that got events since the last read. An idle API used to
        spend a tenth of a core on this loop; now it spends almost nothing."""
        last_id: int | None = None
        seen: int | None = None
        while True:
            try:
                version = self.db.data_version()
                if version is None or version != seen:
                    # Read after the version: a commit during the read changes it again.
                    last_id, runs = await self.db.read_inline(
                        partial(_new_events, after=last_id, watched=bool(self._subs))
                    )
                    seen = version
                    for run_id in runs:  # none on the first look
                        await self.changed(run_id)
            except Exception as exc:  # keep the loop alive; subscribers time out and re-read
                log.warning("notifier.poll_failed", error=str(exc))
                seen = None
                self.wake_all()
            await asyncio.sleep(self.poll_interval)

    async def _listen(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with self.db.listen(NOTIFY_CHANNEL) as conn:
                    backoff = 0.5
                    self.wake_all()  # anything committed while we were not listening
                    async for note in conn.notifies():
                        await self.changed(*read_notice(note.payload))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notifier.listen_failed", error=str(exc))
                self.wake_all()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)


# The hub's reads, built once (building a statement cost more than running it:
# runyard/store/events.py).
_RUN_STATE = select(col(Run.status), col(Run.last_seq)).where(col(Run.id) == bindparam("b_run"))
_NEWEST = (
    select(*EVENT_COLUMNS)
    .where(col(RunEvent.run_id) == bindparam("b_run"))
    .order_by(col(RunEvent.seq).desc())
    .limit(_TAIL)
)
_AFTER = (
    select(*EVENT_COLUMNS)
    .where(col(RunEvent.run_id) == bindparam("b_run"), col(RunEvent.seq) > bindparam("b_last"))
    .order_by(col(RunEvent.seq))
    .limit(_TAIL)
)
_TOP_ID = select(func.max(col(RunEvent.id)))
_CHANGED_RUNS = (
    select(col(RunEvent.run_id))
    .where(col(RunEvent.id) > bindparam("b_after"), col(RunEvent.id) <= bindparam("b_top"))
    .distinct()
)


def run_state(conn: Connection, run_id: str) -> tuple[str, int] | None:
    """The run's (status, last_seq); None if it is not stored."""
    row = conn.execute(_RUN_STATE, {"b_run": run_id}).first()
    return None if row is None else (row.status, row.last_seq)


def nothing_more(state: tuple[str, int] | None, cursor: int) -> bool:
    """Whether a stream at ``cursor`` has nothing more to send: the run (``state``, as
    :func:`run_state` read it) is gone, or has ended and ``cursor`` is its last event."""
    return state is None or (state[0] in TERMINAL_STATUSES and cursor >= state[1])


def _events_after(conn: Connection, run_id: str, last: int | None) -> list[EventRow]:
    """The run's events after ``last``; with ``last`` None, its newest (a tail's seed).
    Core rows, not ORM objects: this read runs at every change of a watched run."""
    if last is None:
        return list(reversed(list(conn.execute(_NEWEST, {"b_run": run_id}))))
    return list(conn.execute(_AFTER, {"b_run": run_id, "b_last": last}))


def _new_events(conn: Connection, after: int | None, watched: bool) -> tuple[int, list[str]]:
    """The newest event id, and the runs with events after ``after`` up to it (none when
    no stream is open, or on the first look)."""
    top = conn.execute(_TOP_ID).scalar() or 0
    if after is None or top <= after or not watched:
        return top, []
    return top, list(conn.scalars(_CHANGED_RUNS, {"b_after": after, "b_top": top}))
