"""The per-key rate limit, counted in the store so that every API replica shares it.

A fixed one-minute window (``unix time // 60``) per bucket: an API key's id, or a
connection token's run. A request is one statement,

    INSERT … VALUES (bucket, minute, 1)
    ON CONFLICT (bucket, minute) DO UPDATE SET hits = hits + 1 RETURNING hits

atomic on SQLite and on Postgres, so N replicas admit the limit in all, not N times it,
and a restart forgets nothing. The same transaction records the key's ``last_used_at``
(at most once a minute per key per process) and, once a minute per process, drops the
windows that are over.
"""

from __future__ import annotations

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
    "INSERT INTO rate_limit_counters (bucket, minute, hits) VALUES (:bucket, :minute, 1) "
    "ON CONFLICT (bucket, minute) DO UPDATE SET hits = rate_limit_counters.hits + 1 "
    "RETURNING hits"
)
TOUCH_SECONDS = 60.0


class RateLimiter:
    def __init__(self, limit: int, *, touch_seconds: float = TOUCH_SECONDS) -> None:
        self.limit = limit
        self.touch_seconds = touch_seconds
        self._touched: dict[str, float] = {}
        self._pruned_minute = 0

    def _due_touch(self, key_id: str | None) -> bool:
        if key_id is None:
            return False
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
        now = time.time()
        minute = int(now // 60)
        touch = self._due_touch(key_id)
        prune = minute != self._pruned_minute
        self._pruned_minute = minute
        params = {"bucket": bucket, "minute": minute}

        def count(s: Session) -> int:
            hits = int(s.execute(_HIT, params).scalar_one())
            if touch and key_id is not None:
                touch_key(s, key_id, datetime.fromtimestamp(now, UTC))
            if prune:
                s.execute(delete(RateLimitCounter).where(col(RateLimitCounter.minute) < minute - 1))
            return hits

        def count_and_commit(s: Session) -> int:
            hits = count(s)
            s.commit()
            return hits

        if db.is_sqlite:
            # One hop to a reader thread and one short write transaction on plain sqlite3:
            # far cheaper than an async write session. Its first statement is the write,
            # so SQLite takes the write lock at once (waiting in its busy handler).
            hits = await db.read(count_and_commit)
        else:
            async with db.write() as session:
                hits = await session.run_sync(count)
        reset = (minute + 1) * 60
        headers = {
            "X-RateLimit-Limit": self.limit,
            "X-RateLimit-Remaining": max(0, self.limit - hits),
            "X-RateLimit-Reset": reset,
        }
        if hits > self.limit:
            headers["Retry-After"] = max(1, math.ceil(reset - now))
            return False, headers
        return True, headers
