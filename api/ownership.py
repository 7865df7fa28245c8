"""Loading an organization's resource: another organization's is answered as missing."""

from __future__ import annotations

from typing import Protocol, TypeVar

from api.errors import ProblemError
from runyard.db.engine import Database


class Owned(Protocol):
    org_id: str


T = TypeVar("T", bound=Owned)


async def load_owned(db: Database, model: type[T], org_id: str, obj_id: str, noun: str) -> T:
    """The row, or 404 ``<NOUN>_NOT_FOUND`` (also when it belongs to another organization)."""
    row = await db.read(lambda s: s.get(model, obj_id))
    if row is None or row.org_id != org_id:
        raise ProblemError(
            404,
            f"{noun.upper()}_NOT_FOUND",
            f"no {noun} {obj_id}",
            title=f"{noun.capitalize()} not found",
        )
    return row
