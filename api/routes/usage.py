"""``GET /v1/usage``: the organization's metered usage over a period, and its credits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from api.deps import DbDep, KnownQueryOnly, ReaderDep
from api.responses import AUTHENTICATED, answers, operation_id
from api.responses_org import UsageReport
from api.run_factory import invalid
from api.schemas import Timestamp
from runyard.db.tables import Organization, Run
from runyard.domain import ACTIVE_STATUSES

router = APIRouter(
    generate_unique_id_function=operation_id,
    prefix="/v1/usage",
    tags=["usage"],
    responses=AUTHENTICATED,
)


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) that holds ``now``: [first day, first day of the next)."""
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if start.month == 12:
        return start, start.replace(year=start.year + 1, month=1)
    return start, start.replace(month=start.month + 1)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@router.get(
    "",
    summary="Usage and credits over a period (default: this calendar month)",
    dependencies=[KnownQueryOnly],
    **answers(UsageReport, 400),
)
async def get_usage(
    principal: ReaderDep,
    db: DbDep,
    from_: Annotated[Timestamp | None, Query(alias="from")] = None,
    to: Annotated[Timestamp | None, Query()] = None,
) -> dict[str, Any]:
    start, end = month_bounds(datetime.now(UTC))
    start, end = from_ or start, to or end
    if start >= end:
        raise invalid("from", "must be before 'to'", "less_than")
    # Runs created in [from, to), summed by the database: one row, whatever the count.
    usage: Any = col(Run.usage)
    status = col(Run.status)
    totals = select(
        func.count(),
        func.count().filter(status.in_(list(ACTIVE_STATUSES))),
        func.count().filter(status == "completed"),
        func.count().filter(status == "failed"),
        func.count().filter(status == "cancelled"),
        func.coalesce(func.sum(usage["costUsd"].as_float()), 0.0),
        func.coalesce(func.sum(usage["creditsUsed"].as_integer()), 0),
        func.coalesce(func.sum(usage["inputTokens"].as_integer()), 0),
        func.coalesce(func.sum(usage["outputTokens"].as_integer()), 0),
    ).where(
        col(Run.org_id) == principal.org_id,
        col(Run.created_at) >= start,
        col(Run.created_at) < end,
    )
    balance_query = select(col(Organization.credits_balance)).where(
        col(Organization.id) == principal.org_id
    )

    def read(s: Session) -> tuple[Any, int | None]:
        return s.execute(totals).one(), s.execute(balance_query).scalar_one_or_none()

    row, balance = await db.read(read)
    total, active, completed, failed, cancelled, cost, credits, inp, out = row
    return {
        "object": "usage",
        "creditsBalance": balance,
        "creditsUsed": int(credits),
        "costUsd": round(float(cost), 6),
        "inputTokens": int(inp),
        "outputTokens": int(out),
        "runs": {
            "total": total,
            "active": active,
            "completed": completed,
            "failed": failed,
            "cancelled": cancelled,
        },
        "from": _rfc3339(start),
        "to": _rfc3339(end),
    }
