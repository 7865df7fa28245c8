"""Organizations and their API keys (stored as SHA-256 hashes, shown once)."""

from __future__ import annotations

import hashlib
import secrets
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
