"""API keys: authentication, scopes and the per-key rate limit."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from fastapi import Request

from api.errors import ProblemError
from runyard.db.engine import Database
from runyard.store.orgs import find_key


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


async def authenticate(request: Request, db: Database, limiter: RateLimiter) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise ProblemError(401, "AUTH_UNAUTHORIZED", "send 'Authorization: Bearer <api key>'")
    scheme, _, raw = header.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        raise ProblemError(
            401, "AUTH_UNAUTHORIZED", "the Authorization header must be 'Bearer <api key>'"
        )
    async with db.session() as s:
        key = await find_key(s, raw)
    if key is None or key.revoked_at is not None:
        raise ProblemError(401, "API_KEY_INVALID", "the API key is unknown or revoked")
    allowed, headers = limiter.hit(key.id)
    request.state.rate_headers = {k: v for k, v in headers.items() if k != "Retry-After"}
    if not allowed:
        raise ProblemError(
            429,
            "RATE_LIMIT_EXCEEDED",
            f"more than {limiter.limit} requests in a minute for this key",
            headers={"Retry-After": str(headers["Retry-After"])},
        )
    return Principal(org_id=key.org_id, key_id=key.id, scopes=frozenset(key.scopes or []))
