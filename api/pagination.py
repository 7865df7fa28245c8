"""``page``/``limit`` listings: ``{"data": [...], "pagination": {...}}`` as API.md says."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.sql.elements import ColumnElement

from runyard.db.engine import Database

T = TypeVar("T")


async def paginate(
    db: Database,
    model: type[T],
    conds: Sequence[ColumnElement[bool]],
    order_by: Sequence[Any],
    page: int,
    limit: int,
    render: Callable[[T], dict[str, Any]],
) -> dict[str, Any]:
    async with db.session() as s:
        count = select(func.count()).select_from(model).where(*conds)
        total = (await s.execute(count)).scalar_one()
        rows = (
            await s.execute(
                select(model)
                .where(*conds)
                .order_by(*order_by)
                .offset((page - 1) * limit)
                .limit(limit)
            )
        ).scalars()
        data = [render(r) for r in rows]
    return {
        "data": data,
        "pagination": {
            "page": page,
            "limit": limit,
            "total": total,
            "totalPages": (total + limit - 1) // limit,
        },
    }
