"""The per-key rate limit, counted in the store so that every API replica shares it.

A fixed one-minute window (``unix time // 60``) per bucket: an API key's id, or a
connection token's run. Counting is one statement per bucket,

    INSERT … VALUES (bucket, minute, n)
    ON CONFLICT (bucket, minute) DO UPDATE SET hits = hits + n RETURNING hits

atomic on SQLite and on Postgres, so N replicas admit the limit in all, not N times it,
and a restart forgets nothing. The requests of a process that arrive while its previous
write is in flight are counted together by the next one (group commit): request ``i`` of
``n`` gets count ``hits - n + i``, exactly what ``n`` separate statements would have
handed out, for one write per batch instead of one per request. The same transaction
records keys' ``last_used_at`` (at most once a minute per key and process) and, once a
minute, drops the windows that are over.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime

from sqlalchemy import delete, text
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.db.engine import Database
from runyard.db.models import RateLimitCounter
from runyard.store.orgs import touch_key

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
                totals = await self._write(
                    db, {b: len(f) for b, f in batch.items()}, minute, touch, prune, now
                )
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

    @staticmethod
    async def _write(
        db: Database, counts: dict[str, int], minute: int, touch: set[str], prune: bool, now: float
    ) -> dict[str, int]:
        def count(s: Session) -> dict[str, int]:
            # Rows in sorted order: two replicas' batches lock them in the same order, so
            # they never deadlock on Postgres.
            totals = {
                bucket: int(
                    s.execute(_HIT, {"bucket": bucket, "minute": minute, "n": n}).scalar_one()
                )
                for bucket, n in sorted(counts.items())
            }
            for key_id in sorted(touch):
                touch_key(s, key_id, datetime.fromtimestamp(now, UTC))
            if prune:
                s.execute(delete(RateLimitCounter).where(col(RateLimitCounter.minute) < minute - 1))
            return totals

        def count_and_commit(s: Session) -> dict[str, int]:
            totals = count(s)
            s.commit()
            return totals

        if db.is_sqlite:
            # One hop to a reader thread and one short write transaction on plain sqlite3,
            # far cheaper than an async write session. Its first statement is the write,
            # so SQLite takes the write lock at once (waiting in its busy handler).
            return await db.read(count_and_commit)
        async with db.write() as session:
            return await session.run_sync(count)
