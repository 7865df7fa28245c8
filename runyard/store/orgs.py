"""Organizations and their API keys (stored as SHA-256 hashes, shown once)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.db.models import ApiKey, Organization
from runyard.ids import new_id

ALL_SCOPES = ("runs:read", "runs:write", "admin")
KEY_PREFIX = "ry_live_"


def hash_key(raw: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is enough (no password stretching).
    return hashlib.sha256(raw.encode()).hexdigest()


async def ensure_org(session: AsyncSession, name: str) -> Organization:
    org = (
        (
            await session.execute(
                select(Organization).where(
                    (col(Organization.name) == name) | (col(Organization.id) == name)
                )
            )
        )
        .scalars()
        .first()
    )
    if org is None:
        org = Organization(id=new_id("org"), name=name)
        session.add(org)
        await session.flush()
    return org


async def create_key(session: AsyncSession, org_id: str, scopes: list[str]) -> tuple[str, ApiKey]:
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=new_id("key"), org_id=org_id, key_hash=hash_key(raw), prefix=raw[:12], scopes=scopes
    )
    session.add(row)
    await session.flush()
    return raw, row


def find_key(session: Session, raw: str) -> ApiKey | None:
    """The key row for a raw key (synchronous: it runs inside ``Database.read``)."""
    return (
        session.execute(select(ApiKey).where(col(ApiKey.key_hash) == hash_key(raw)))
        .scalars()
        .first()
    )
