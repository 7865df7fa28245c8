"""The credit check before a run starts (exec, create-with-start)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from api.errors import ProblemError
from runyard.db.engine import Database
from runyard.db.tables import Organization


async def check_credits(db: Database, org_id: str) -> None:
    """402 ``USAGE_INSUFFICIENT_CREDITS`` when credits are on and the balance is not above 0."""
    query = select(col(Organization.credits_balance)).where(col(Organization.id) == org_id)

    def read(s: Session) -> int | None:
        return s.execute(query).scalar_one_or_none()

    balance = await db.read(read)
    if balance is not None and balance <= 0:
        raise ProblemError(
            402,
            "USAGE_INSUFFICIENT_CREDITS",
            f"the organization has {balance} credits left; an operator can add some with "
            "'runyard credits grant'",
            title="Insufficient credits",
        )
