"""One event notifier per API process: streams wait on it instead of polling the store.

Postgres: the transaction that appends events also runs ``pg_notify``; one connection
per process LISTENs and wakes the streams of that run. SQLite: one shared loop looks
at ``max(run_events.id)`` each tick (one tiny query, however many streams are open)
and, when it moved, finds which runs got events. Either way a subscriber is also woken
by its own timeout, so a lost notification costs at most one ping interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

import psycopg
import structlog
from sqlalchemy import func, select
from sqlmodel import col

from runyard.db.engine import Database
from runyard.db.models import RunEvent
from runyard.store.events import NOTIFY_CHANNEL

log = structlog.get_logger("runyard.notifier")


class Subscription:
    def __init__(self, notifier: EventNotifier, run_id: str) -> None:
        self.notifier, self.run_id = notifier, run_id
        self.event = asyncio.Event()

    def clear(self) -> None:
        """Call before reading the store, so a commit after the read still wakes ``wait``."""
        self.event.clear()

    async def wait(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.notifier._remove(self)


class EventNotifier:
    def __init__(self, db: Database, *, poll_interval: float = 0.02) -> None:
        self.db = db
        self.poll_interval = poll_interval
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, run_id: str) -> Subscription:
        sub = Subscription(self, run_id)
        self._subs[run_id].add(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.run_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.run_id]

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def wake(self, run_id: str) -> None:
        for sub in self._subs.get(run_id, ()):
            sub.event.set()

    def wake_all(self) -> None:
        for run_id in list(self._subs):
            self.wake(run_id)

    async def start(self) -> None:
        loop = self._listen if not self.db.is_sqlite else self._poll
        self._task = asyncio.create_task(loop(), name="event-notifier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        last_id: int | None = None
        while True:
            try:
                async with self.db.session() as s:
                    top = (await s.execute(select(func.max(col(RunEvent.id))))).scalar() or 0
                    if last_id is not None and top > last_id and self._subs:
                        runs = (
                            await s.execute(
                                select(col(RunEvent.run_id))
                                .where(col(RunEvent.id) > last_id, col(RunEvent.id) <= top)
                                .distinct()
                            )
                        ).scalars()
                        for run_id in runs:
                            self.wake(run_id)
                    last_id = top
            except Exception as exc:  # keep the loop alive; subscribers time out and re-read
                log.warning("notifier.poll_failed", error=str(exc))
                self.wake_all()
            await asyncio.sleep(self.poll_interval)

    async def _listen(self) -> None:
        url = self.db.url.replace("postgresql+psycopg://", "postgresql://")
        backoff = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    backoff = 0.5
                    self.wake_all()  # anything committed while we were not listening
                    async for note in conn.notifies():
                        self.wake(note.payload.partition(":")[0])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("notifier.listen_failed", error=str(exc))
                self.wake_all()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)
