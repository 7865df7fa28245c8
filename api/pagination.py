"""``page``/``limit`` listings: ``{"data": [...], "pagination": {...}}`` as API.md says.

Every list endpoint takes its paging through :data:`PageDep` and answers through
:func:`paginate`, so they all accept the same parameters with the same bounds and answer
the same envelope (``tests/integration/test_openapi.py`` checks every list endpoint of
the OpenAPI document against a live API).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query
from sqlalchemy import func, select
from sqlalchemy.sql.elements import ColumnElement

from runyard.db.engine import Database

T = TypeVar("T")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Far past any real listing; it keeps the OFFSET a store computes bounded.
MAX_PAGE = 1_000_000


@dataclass(frozen=True)
class Paging:
    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


async def _paging(
    page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="the page, from 1")] = 1,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="items per page, 1 to 100")
    ] = DEFAULT_LIMIT,
) -> Paging:
    return Paging(page, limit)


# A list route's paging: ``paging: PageDep``.
PageDep = Annotated[Paging, Depends(_paging)]


async def paginate(
    db: Database,
    model: type[T],
    conds: Sequence[ColumnElement[bool]],
    order_by: Sequence[Any],
    paging: Paging,
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
                .offset(paging.offset)
                .limit(paging.limit)
            )
        ).scalars()
        data = [render(r) for r in rows]
    return {
        "data": data,
        "pagination": {
            "page": paging.page,
            "limit": paging.limit,
            "total": total,
            "totalPages": (total + paging.limit - 1) // paging.limit,
        },
    }
