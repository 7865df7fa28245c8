"""A run's row, read for rendering: the hot read of get-run and get-status.

``Session.get`` built an ORM ``Run`` (identity map, instance state, attribute events) for
a row the API only renders; a Core select of the same columns, each labelled with the
model's attribute name, returns a ``Row`` whose attributes are the model's, with the
same type processing (JSON, UTC datetimes), at about 40 % of the cost (0.26 → 0.10 ms
a read on SQLite). The row is read-only: callers that change a run load the ORM object.

The read now goes one level lower: the same statement on the driver's connection, each
column converted as its SQLAlchemy type would (``_CONVERT``, derived from the table's
types at import; a column of a type it does not know fails the import), into a named
tuple with the model's attribute names. SQLAlchemy's statement cache, execution context
and result machinery were half of the read (SQLite: 51 → 23 µs a read, in a loop);
``tests/integration/test_run_rows.py`` checks every column against SQLAlchemy's.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import JSON, Connection, Integer, String, inspect
from sqlalchemy.sql.type_api import TypeEngine
from sqlmodel.sql.sqltypes import AutoString

from runyard.db.engine import Database
from runyard.db.tables import Run
from runyard.db.types import UTCDateTime
from runyard.jsonsafe import store_loads

_ATTRS = inspect(Run).column_attrs
_COLUMNS = ", ".join(f'"{attr.columns[0].name}"' for attr in _ATTRS)
# The statement in each driver's parameter style.
_SQL = {
    "sqlite": f"SELECT {_COLUMNS} FROM runs WHERE id = ?",
    "postgresql": f"SELECT {_COLUMNS} FROM runs WHERE id = %s",
}


def _json_text(value: Any) -> Any:
    return None if value is None else store_loads(value)


def _utc_text(value: Any) -> datetime | None:
    if value is None:
        return None
    dt = datetime.fromisoformat(value)  # SQLAlchemy's SQLite format: 2026-12-05 21:04:07.097445
    return _utc(dt)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _converter(kind: TypeEngine[Any], dialect: str) -> Callable[[Any], Any] | None:
    """How the driver's value of a ``kind`` column becomes what SQLAlchemy would return
    (None: as it is). SQLite hands back JSON and datetimes as text; psycopg parses JSON
    itself and gives datetimes in the session's zone."""
    if isinstance(kind, JSON):
        return _json_text if dialect == "sqlite" else None
    if isinstance(kind, UTCDateTime):
        return _utc_text if dialect == "sqlite" else _utc
    if isinstance(kind, AutoString | String | Integer):  # AutoString: sqlmodel's str
        return None
    raise TypeError(f"run_rows reads no {kind!r} column; teach _converter")


_CONVERT = {
    dialect: [
        (i, convert)
        for i, attr in enumerate(_ATTRS)
        if (convert := _converter(attr.columns[0].type, dialect)) is not None
    ]
    for dialect in _SQL
}
RunTuple = namedtuple("RunTuple", [attr.key for attr in _ATTRS])  # type: ignore[misc]


def _fetch(conn: Connection, run_id: str) -> Run | None:
    """The row on the driver's own connection, converted, as a named tuple with the
    model's attribute names: read like a Run by the run views."""
    dialect = conn.dialect.name
    driver: Any = conn.connection.dbapi_connection
    found = driver.execute(_SQL[dialect], (run_id,)).fetchone()
    if found is None:
        return None
    values = list(found)
    for i, convert in _CONVERT[dialect]:
        values[i] = convert(values[i])
    return cast(Run, RunTuple._make(values))


async def read_run_row(db: Database, org_id: str, run_id: str) -> Run | None:
    """The run's row (read-only), or None if it is missing or another organization's."""
    row = await db.read_inline(lambda conn: _fetch(conn, run_id))
    return row if row is not None and row.org_id == org_id else None
