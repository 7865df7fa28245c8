"""Credits: an organization's balance and the ledger of grants and per-turn charges.

One credit is $0.001 of model cost. A NULL balance means credits are off for the
organization (the default): usage is metered, nothing is refused. Every change of a
balance is one ``UPDATE … RETURNING`` (atomic on SQLite and Postgres, however many runs
finish turns at once) plus a ledger row in the same transaction; a ledger key that is
already stored makes a repeated charge a no-op.
"""

from __future__ import annotations

import secrets

from sqlalchemy import bindparam, exists, func, select, update
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.db.tables import CreditEntry, Organization
from runyard.db.types import utcnow


def charge_key(run_id: str, turn: int) -> str:
    return f"charge.{run_id}.turn{turn}"


def balance(session: Session, org_id: str) -> int | None:
    query = select(col(Organization.credits_balance)).where(col(Organization.id) == org_id)
    value = session.execute(query).scalar_one_or_none()
    return None if value is None else int(value)


def grant(session: Session, org_id: str, amount: int) -> int:
    """Add ``amount`` credits (turning credits on); the new balance."""
    if amount <= 0:
        raise ValueError("a grant must be a positive number of credits")
    new_balance: int | None = session.execute(
        update(Organization)
        .where(col(Organization.id) == org_id)
        .values(credits_balance=func.coalesce(col(Organization.credits_balance), 0) + amount)
        .returning(col(Organization.credits_balance))
    ).scalar_one_or_none()
    if new_balance is None:
        raise LookupError(f"no organization {org_id}")
    session.add(
        CreditEntry(
            org_id=org_id,
            key=f"grant.{secrets.token_hex(8)}",
            amount=amount,
            balance_after=int(new_balance),
            created_at=utcnow(),
        )
    )
    session.flush()
    return int(new_balance)


# Built once: it runs at every turn (runyard/store/events.py says why).
_CHARGE = (
    update(Organization)
    .where(
        col(Organization.id) == bindparam("b_org_id"),
        col(Organization.credits_balance).is_not(None),
        ~exists().where(col(CreditEntry.key) == bindparam("b_key")),
    )
    .values(credits_balance=col(Organization.credits_balance) - bindparam("b_credits"))
    .returning(col(Organization.credits_balance))
)


def charge_turn(session: Session, org_id: str, run_id: str, turn: int, credits: int) -> int | None:
    """Charge a completed turn; the balance after, or None when credits are off.

    Call it in the transaction that stores the turn, so a turn is charged exactly when it
    is stored. A zero-credit turn writes nothing. The balance may go below zero by the
    last turn's cost: the turn has happened; the next one is refused.
    """
    if credits <= 0:
        return None
    key = charge_key(run_id, turn)
    # One statement for a turn of an organization without credits (most): the balance
    # changes only when credits are on and this turn was not charged yet.
    params = {"b_org_id": org_id, "b_key": key, "b_credits": credits}
    new_balance = session.connection().execute(_CHARGE, params).scalar_one_or_none()
    if new_balance is None:  # credits are off for this organization, or charged already
        return None
    session.add(
        CreditEntry(
            org_id=org_id,
            key=key,
            amount=-credits,
            balance_after=int(new_balance),
            run_id=run_id,
            created_at=utcnow(),
        )
    )
    session.flush()
    return int(new_balance)
