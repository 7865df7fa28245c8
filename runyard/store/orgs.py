"""Organizations and their API keys (stored as SHA-256 hashes, shown once)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.db.tables import ApiKey, Organization
from runyard.db.types import utcnow
from runyard.ids import new_id

ALL_SCOPES = ("runs:read", "runs:write", "admin")
KEY_PREFIX = "ry_live_"


class DelegationRefused(ValueError):
    """A key asked for more than the key creating it holds (scopes or lifetime)."""


def effective_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """What a key holding ``scopes`` may do: ``admin`` implies every scope."""
    held = frozenset(scopes)
    return frozenset(ALL_SCOPES) if "admin" in held else held


def delegated_expiry(
    scopes: Iterable[str],
    expires_at: datetime | None,
    *,
    creator_scopes: Iterable[str],
    creator_expires_at: datetime | None,
) -> datetime | None:
    """The expiry of a key that a key (``creator_*``) creates; raises DelegationRefused.

    A key can hand on no more than it holds: its scopes must be within the creator's, and
    it expires no later than the creator. Without an expiry of its own it takes the
    creator's, so a key that expires in five minutes cannot mint one that never does.
    """
    extra = sorted(set(scopes) - effective_scopes(creator_scopes), key=ALL_SCOPES.index)
    if extra:
        raise DelegationRefused(
            f"this API key cannot grant scope(s) it does not hold: {', '.join(extra)}"
        )
    if creator_expires_at is None:
        return expires_at
    if expires_at is None:
        return creator_expires_at
    if expires_at > creator_expires_at:
        limit = creator_expires_at.isoformat().replace("+00:00", "Z")
        raise DelegationRefused(
            f"expiresAt must not be later than this API key's own expiry, {limit}"
        )
    return expires_at


def hash_key(raw: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is enough (no password stretching).
    return hashlib.sha256(raw.encode()).hexdigest()


async def ensure_org(session: AsyncSession, name: str) -> Organization:
    org = await find_org(session, name)
    if org is None:
        org = Organization(id=new_id("org"), name=name)
        session.add(org)
        await session.flush()
    return org


async def find_org(session: AsyncSession, name_or_id: str) -> Organization | None:
    query = select(Organization).where(
        (col(Organization.name) == name_or_id) | (col(Organization.id) == name_or_id)
    )
    return (await session.execute(query)).scalars().first()


async def create_key(
    session: AsyncSession,
    org_id: str,
    scopes: list[str],
    *,
    name: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[str, ApiKey]:
    """A new key: the raw key (shown once, never stored) and its row."""
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=new_id("key"),
        org_id=org_id,
        key_hash=hash_key(raw),
        name=name,
        prefix=raw[:12],
        scopes=scopes,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    return raw, row


async def revoke_key(
    session: AsyncSession, key_id: str, org_id: str | None = None
) -> ApiKey | None:
    """Revoke a live key (of ``org_id`` when given); None when there is no such live key."""
    key = await session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None or (org_id is not None and key.org_id != org_id):
        return None
    key.revoked_at = utcnow()
    session.add(key)
    await session.flush()
    return key


def touch_key(session: Session, key_id: str, now: datetime) -> None:
    """Record a use of the key (synchronous; callers limit this to once a minute)."""
    session.execute(update(ApiKey).where(col(ApiKey.id) == key_id).values(last_used_at=now))


def find_key(session: Session, raw: str) -> ApiKey | None:
    """The key row for a raw key (synchronous: it runs inside ``Database.read``)."""
    return (
        session.execute(select(ApiKey).where(col(ApiKey.key_hash) == hash_key(raw)))
        .scalars()
        .first()
    )
