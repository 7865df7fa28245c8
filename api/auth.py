"""Authentication: API keys (scoped, expiring, revocable) and run connection tokens.

A request carries ``Authorization: Bearer <credential>``; a connection token may come as
``?token=`` instead (EventSource cannot set headers). API keys are never read from the
URL, where logs and browser histories would keep them.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

from cachetools import TTLCache
from fastapi import Request

from api.errors import ProblemError
from api.ratelimit import RateLimiter
from api.tokens import TokenClaims, looks_like_token, token_opens, verify_token
from runyard.db.engine import Database
from runyard.db.tables import ApiKey
from runyard.db.types import utcnow
from runyard.store.orgs import KEY_PREFIX, find_key, hash_key


@dataclass(frozen=True)
class Principal:
    org_id: str
    key_id: str
    scopes: frozenset[str]
    expires_at: datetime | None = None
    # Set for a connection token: the one run it opens.
    run_id: str | None = None

    def require(self, scope: str) -> None:
        if scope not in self.scopes and "admin" not in self.scopes:
            raise ProblemError(403, "FORBIDDEN", f"this API key lacks the '{scope}' scope")


class KeyCache:
    """Keys found valid in the store, remembered for ``ttl`` seconds by their hash.

    Without it every request pays a store read before its own; the profile of
    ``bench/api.py`` showed that read as a third of a get-run. A key revoked in the store
    stops working in this process within ``ttl`` seconds (at once in the process that
    revoked it). Unknown keys are never cached, so guessing costs memory nothing.
    """

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        # Expiry and a bound on size (the least recently used entry goes first).
        self._entries: TTLCache[str, Principal] | None = (
            TTLCache(maxsize=max_entries, ttl=ttl) if ttl > 0 else None
        )

    def get(self, key_hash: str) -> Principal | None:
        return None if self._entries is None else self._entries.get(key_hash)

    def put(self, key_hash: str, principal: Principal) -> None:
        if self._entries is not None:
            self._entries[key_hash] = principal

    def forget_key(self, key_id: str) -> None:
        if self._entries is None:
            return
        for k in [k for k, v in self._entries.items() if v.key_id == key_id]:
            self._entries.pop(k, None)


def _invalid(detail: str = "the API key is unknown, revoked or expired") -> ProblemError:
    return ProblemError(401, "API_KEY_INVALID", detail)


def _live(key: ApiKey | None) -> bool:
    return (
        key is not None
        and key.revoked_at is None
        and (key.expires_at is None or key.expires_at > utcnow())
    )


async def _key_principal(db: Database, cache: KeyCache, raw: str) -> Principal:
    key_hash = hash_key(raw)
    principal = cache.get(key_hash)
    if principal is None:
        key = await db.read(lambda s: find_key(s, raw))
        # The lookup is by hash; comparing the hashes again in constant time costs nothing
        # and keeps timing out of the picture whatever the index does.
        if key is None or not hmac.compare_digest(key.key_hash, key_hash) or not _live(key):
            raise _invalid()
        principal = Principal(
            org_id=key.org_id,
            key_id=key.id,
            scopes=frozenset(key.scopes or []),
            expires_at=key.expires_at,
        )
        cache.put(key_hash, principal)
    if principal.expires_at is not None and principal.expires_at <= utcnow():
        raise _invalid("the API key has expired")
    return principal


async def _token_principal(
    request: Request, db: Database, cache: KeyCache, claims: TokenClaims
) -> Principal:
    if not token_opens(request.method, request.url.path, claims.run_id):
        raise _invalid("this connection token is not valid for this path")
    # The key that asked for the token must still be live: revoking it revokes its tokens.
    cache_key = "token-key:" + claims.key_id
    if cache.get(cache_key) is None:
        key = await db.read(lambda s: s.get(ApiKey, claims.key_id))
        if not _live(key) or key is None or key.org_id != claims.org_id:
            raise _invalid("the API key behind this connection token is no longer valid")
        cache.put(cache_key, Principal(org_id=key.org_id, key_id=key.id, scopes=frozenset()))
    return Principal(
        org_id=claims.org_id, key_id=claims.key_id, scopes=claims.scopes, run_id=claims.run_id
    )


def _credential(request: Request) -> tuple[str, bool]:
    """The raw credential and whether it came from the URL."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, raw = header.partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw:
            raise ProblemError(
                401, "AUTH_UNAUTHORIZED", "the Authorization header must be 'Bearer <api key>'"
            )
        return raw, False
    token = request.query_params.get("token")
    if token:
        return token, True
    raise ProblemError(401, "AUTH_UNAUTHORIZED", "send 'Authorization: Bearer <api key>'")


async def authenticate(
    request: Request, db: Database, limiter: RateLimiter, cache: KeyCache, secret: bytes
) -> Principal:
    raw, in_url = _credential(request)
    if raw.startswith(KEY_PREFIX):
        if in_url:
            raise _invalid("API keys are not accepted in the URL; send an Authorization header")
        principal = await _key_principal(db, cache, raw)
        bucket, touch = principal.key_id, principal.key_id
    elif looks_like_token(raw):
        claims = verify_token(secret, raw)
        principal = await _token_principal(request, db, cache, claims)
        bucket, touch = claims.run_id, None
    else:
        raise _invalid()
    allowed, headers = await limiter.hit(db, bucket, key_id=touch)
    request.state.rate_headers = {k: v for k, v in headers.items() if k != "Retry-After"}
    if not allowed:
        raise ProblemError(
            429,
            "RATE_LIMIT_EXCEEDED",
            f"more than {limiter.limit} requests in a minute for this key",
            headers={"Retry-After": str(headers["Retry-After"])},
        )
    return principal


async def authenticate_api_key(
    request: Request, db: Database, limiter: RateLimiter, cache: KeyCache, raw: str
) -> Principal:
    """An API key given some other way than ``Authorization`` (the LangGraph routes'
    ``X-Api-Key``): the same checks and the same rate limit; never a connection token."""
    if not raw.startswith(KEY_PREFIX):
        raise _invalid()
    principal = await _key_principal(db, cache, raw)
    allowed, headers = await limiter.hit(db, principal.key_id, key_id=principal.key_id)
    request.state.rate_headers = {k: v for k, v in headers.items() if k != "Retry-After"}
    if not allowed:
        raise ProblemError(
            429,
            "RATE_LIMIT_EXCEEDED",
            f"more than {limiter.limit} requests in a minute for this key",
            headers={"Retry-After": str(headers["Retry-After"])},
        )
    return principal
