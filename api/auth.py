"""API keys: authentication, scopes and the per-key rate limit."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from fastapi import Request

from api.errors import ProblemError
from runyard.db.engine import Database
from runyard.store.orgs import find_key, hash_key


@dataclass(frozen=True)
class Principal:
    org_id: str
    key_id: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes and "admin" not in self.scopes:
            raise ProblemError(403, "FORBIDDEN", f"this API key lacks the '{scope}' scope")


class RateLimiter:
    """A fixed one-minute window per key, in this API process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._windows: dict[str, tuple[int, int]] = {}

    def hit(self, key_id: str) -> tuple[bool, dict[str, int]]:
        now = time.time()
        window = int(now // 60)
        start, count = self._windows.get(key_id, (window, 0))
        if start != window:
            start, count = window, 0
        count += 1
        self._windows[key_id] = (start, count)
        if len(self._windows) > 100_000:  # forget idle keys
            self._windows = {k: v for k, v in self._windows.items() if v[0] == window}
        reset = (window + 1) * 60
        headers = {
            "X-RateLimit-Limit": self.limit,
            "X-RateLimit-Remaining": max(0, self.limit - count),
            "X-RateLimit-Reset": reset,
        }
        if count > self.limit:
            headers["Retry-After"] = max(1, math.ceil(reset - now))
            return False, headers
        return True, headers


class KeyCache:
    """Keys found valid in the store, remembered for ``ttl`` seconds by their hash.

    Without it every request pays a store read before its own; the profile of
    ``bench/api.py`` showed that read as a third of a get-run. A key revoked in the store
    stops working in this process within ``ttl`` seconds. Unknown keys are never cached,
    so guessing costs memory nothing.
    """

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, key_hash: str) -> Principal | None:
        hit = self._entries.get(key_hash)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            del self._entries[key_hash]
            return None
        return hit[1]

    def put(self, key_hash: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[key_hash] = (time.monotonic() + self.ttl, principal)


async def _principal(db: Database, cache: KeyCache, raw: str) -> Principal:
    key_hash = hash_key(raw)
    principal = cache.get(key_hash)
    if principal is not None:
        return principal
    key = await db.read(lambda s: find_key(s, raw))
    if key is None or key.revoked_at is not None:
        raise ProblemError(401, "API_KEY_INVALID", "the API key is unknown or revoked")
    principal = Principal(org_id=key.org_id, key_id=key.id, scopes=frozenset(key.scopes or []))
    cache.put(key_hash, principal)
    return principal


async def authenticate(
    request: Request, db: Database, limiter: RateLimiter, cache: KeyCache
) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise ProblemError(401, "AUTH_UNAUTHORIZED", "send 'Authorization: Bearer <api key>'")
    scheme, _, raw = header.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        raise ProblemError(
            401, "AUTH_UNAUTHORIZED", "the Authorization header must be 'Bearer <api key>'"
        )
    principal = await _principal(db, cache, raw)
    allowed, headers = limiter.hit(principal.key_id)
    request.state.rate_headers = {k: v for k, v in headers.items() if k != "Retry-After"}
    if not allowed:
        raise ProblemError(
            429,
            "RATE_LIMIT_EXCEEDED",
            f"more than {limiter.limit} requests in a minute for this key",
            headers={"Retry-After": str(headers["Retry-After"])},
        )
    return principal
