"""The per-key rate limit, counted in the store so that every API replica shares it.

A fixed one-minute window (``unix time // 60``) per bucket: an API key's id, or a
connection token's run. Counting is one statement per bucket,

    INSERT … VALUES (bucket, minute, n)
    ON CONFLICT (bucket, minute) DO UPDATE SET hits = hits + n RETURNING hits

atomic on SQLite and on Postgres, so N replicas admit the limit in all, not N times it,
and a restart forgets nothing. On Postgres the counters are a table of the store; a
SQLite store keeps them in a SQLite file beside it (see ``counter_path``).

The requests of a process that arrive while its previous write is in flight are counted
together by the next one (group commit): request ``i`` of ``n`` gets count
``hits - n + i``, exactly what ``n`` separate statements would have handed out, for one
write per batch instead of one per request. Once a minute the same transaction drops the
windows that are over. Keys' ``last_used_at`` is written at most once a minute per key
and process (on Postgres in the same transaction).
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.db.engine import Database
from runyard.db.tables import RateLimitCounter
from runyard.store.orgs import touch_key

_HIT_SQL = (
    "INSERT INTO rate_limit_counters (bucket, minute, hits) VALUES (?, ?, ?) "
    "ON CONFLICT (bucket, minute) DO UPDATE SET hits = rate_limit_counters.hits + ? "
    "RETURNING hits"
)
_CREATE_SQL = (
    "CREATE TABLE IF NOT EXISTS rate_limit_counters (bucket VARCHAR NOT NULL, "
    "minute INTEGER NOT NULL, hits INTEGER NOT NULL, PRIMARY KEY (bucket, minute))"
)
_HIT = text(
    "INSERT INTO rate_limit_counters (bucket, minute, hits) VALUES (:bucket, :minute, :n) "
    "ON CONFLICT (bucket, minute) DO UPDATE SET hits = rate_limit_counters.hits + :n "
    "RETURNING hits"
)
TOUCH_SECONDS = 60.0


class RateLimiter:
    def __init__(self, limit: int, *, touch_seconds: float = TOUCH_SECONDS) -> None:
        self.limit = limit
        self.touch_seconds = touch_seconds
        self._touched: dict[str, float] = {}
        self._pending: dict[str, list[asyncio.Future[tuple[int, int]]]] = {}
        self._to_touch: set[str] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._pruned_minute = 0
        self._sqlite: _SqliteCounter | None = None

    def _due_touch(self, key_id: str) -> bool:
        now = time.monotonic()
        last = self._touched.get(key_id)
        if last is not None and now - last < self.touch_seconds:
            return False
        if len(self._touched) >= 10_000:
            self._touched = {k: t for k, t in self._touched.items() if now - t < 60}
        self._touched[key_id] = now
        return True

    async def hit(
        self, db: Database, bucket: str, *, key_id: str | None = None
    ) -> tuple[bool, dict[str, int]]:
        """Count one request of ``bucket``; (allowed, the X-RateLimit-* and Retry-After)."""
        future: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(bucket, []).append(future)
        if key_id is not None and self._due_touch(key_id):
            self._to_touch.add(key_id)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(db))
        hits, minute = await future
        reset = (minute + 1) * 60
        headers = {
            "X-RateLimit-Limit": self.limit,
            "X-RateLimit-Remaining": max(0, self.limit - hits),
            "X-RateLimit-Reset": reset,
        }
        if hits > self.limit:
            headers["Retry-After"] = max(1, math.ceil(reset - time.time()))
            return False, headers
        return True, headers

    async def _flush(self, db: Database) -> None:
        """Write the pending counts, batch after batch, until nothing is pending."""
        while self._pending:
            batch, self._pending = self._pending, {}
            touch, self._to_touch = self._to_touch, set()
            now = time.time()
            minute = int(now // 60)
            prune = minute != self._pruned_minute
            try:
                counts = {b: len(f) for b, f in batch.items()}
                totals = await self._write(db, counts, minute, touch, prune, now)
            except Exception as exc:  # each waiting request fails with it (→ 500 problem)
                for futures in batch.values():
                    for f in futures:
                        if not f.done():
                            f.set_exception(exc)
                continue
            self._pruned_minute = minute
            for bucket, futures in batch.items():
                first = totals[bucket] - len(futures) + 1
                for i, f in enumerate(futures):
                    if not f.done():
                        f.set_result((first + i, minute))

    async def _write(
        self,
        db: Database,
        counts: dict[str, int],
        minute: int,
        touch: set[str],
        prune: bool,
        now: float,
    ) -> dict[str, int]:
        used = datetime.fromtimestamp(now, UTC)
        if db.is_sqlite:
            if self._sqlite is None:
                self._sqlite = _SqliteCounter(counter_path(make_url(db.url).database or ""))
            counter = self._sqlite
            totals = counter.try_count(counts, minute, prune)
            if totals is None:
                totals = await asyncio.get_running_loop().run_in_executor(
                    counter.thread, counter.count, counts, minute, prune
                )
            if touch:  # at most once a minute per key: the ordinary write path will do
                async with db.write() as session:
                    await session.run_sync(lambda s: _touch(s, touch, used))
            return totals

        def count(s: Session) -> dict[str, int]:
            totals = {
                bucket: int(
                    s.execute(_HIT, {"bucket": bucket, "minute": minute, "n": n}).scalar_one()
                )
                for bucket, n in sorted(counts.items())
            }
            _touch(s, touch, used)
            if prune:
                s.execute(delete(RateLimitCounter).where(col(RateLimitCounter.minute) < minute - 1))
            return totals

        async with db.write() as session:
            return await session.run_sync(count)

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None


def _touch(s: Session, key_ids: set[str], used: datetime) -> None:
    # Sorted: two replicas' transactions lock rows in the same order, so they never
    # deadlock on Postgres (the counter rows above are sorted for the same reason).
    for key_id in sorted(key_ids):
        touch_key(s, key_id, used)


def counter_path(store_path: str) -> str:
    """Where a SQLite store keeps its rate-limit counters: a file beside it.

    Not in the store itself: every commit to a SQLite file makes every other connection
    to it drop its page cache, so counting there would cost each request's own reads a
    cold cache. Replicas that share the data dir share this file, and so the limit.
    """
    if not store_path or store_path == ":memory:":
        return ":memory:"
    path = Path(store_path)
    return str(path.with_name(path.stem + "-ratelimit" + path.suffix))


class _SqliteCounter:
    """The counting statement on SQLite: plain sqlite3, skipping SQLAlchemy (whose session
    costs more than the statement).

    First on the event loop, with a connection that never waits for the write lock: the
    transaction is a few tens of microseconds, less than a hop to a thread. That
    connection never checkpoints the WAL (the store's own connections do), so it never
    does I/O beyond appending to the WAL. When another writer holds the lock, the batch
    goes to a thread of its own whose connection waits in SQLite's busy handler.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="runyard-ratelimit")
        self._inline: sqlite3.Connection | None = None
        self._waiting: sqlite3.Connection | None = None
        self._inline_commits = 0

    def _connect(self, *, wait: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=30 if wait else 0, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if wait:
            conn.execute(_CREATE_SQL)
        else:
            conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    def checkpoint(self) -> None:
        """Fold the WAL back into the file (in ``self.thread``; the inline path never does)."""
        if self._waiting is None:
            self._waiting = self._connect(wait=True)
        self._waiting.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def try_count(self, counts: dict[str, int], minute: int, prune: bool) -> dict[str, int] | None:
        """The totals, or None when another connection holds the write lock."""
        if self._inline is None:
            if self._waiting is None:  # the table is made, once, by the waiting connection
                return None
            self._inline = self._connect(wait=False)
        try:
            self._inline.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # "database is locked"
            return None
        totals = self._run(self._inline, counts, minute, prune)
        self._inline_commits += 1
        if self._inline_commits % 256 == 0:
            self.thread.submit(self.checkpoint)
        return totals

    def count(self, counts: dict[str, int], minute: int, prune: bool) -> dict[str, int]:
        """The totals, waiting for the write lock (in ``self.thread``)."""
        if self._waiting is None:
            self._waiting = self._connect(wait=True)
        self._waiting.execute("BEGIN IMMEDIATE")
        return self._run(self._waiting, counts, minute, prune)

    @staticmethod
    def _run(
        conn: sqlite3.Connection, counts: dict[str, int], minute: int, prune: bool
    ) -> dict[str, int]:
        # In WAL mode, once BEGIN IMMEDIATE holds the write lock nothing below waits.
        try:
            totals = {
                bucket: int(conn.execute(_HIT_SQL, (bucket, minute, n, n)).fetchone()[0])
                for bucket, n in counts.items()
            }
            if prune:
                conn.execute("DELETE FROM rate_limit_counters WHERE minute < ?", (minute - 1,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return totals

    def close(self) -> None:
        def shut() -> None:
            if self._waiting is not None:
                self._waiting.close()
                self._waiting = None

        self.thread.submit(shut).result()
        self.thread.shutdown(wait=True)
        if self._inline is not None:
            self._inline.close()
            self._inline = None
