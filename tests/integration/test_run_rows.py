"""The Core read of a run's row (runyard/store/run_rows.py) renders as the ORM row does."""

from __future__ import annotations

from datetime import timedelta

from runyard.db.engine import Database
from runyard.db.tables import Run
from runyard.db.types import utcnow
from runyard.store.orgs import ensure_org
from runyard.store.run_rows import read_run_row
from runyard.store.run_view import run_object, status_object


async def test_core_row_renders_like_the_orm_row(db: Database) -> None:
    async with db.write() as s:
        org = await ensure_org(s, "rows")
        now = utcnow()
        s.add(
            Run(
                id="run_rows1",
                org_id=org.id,
                status="completed",
                prompt="p",
                model="scripted",
                workflow_id="w",
                guardrails={"maxTurns": 3},
                outputs=[{"type": "file", "path": "a.txt", "bytes": 3}],
                usage={"inputTokens": 7},
                metadata_={"k": "v"},
                created_at=now,
                started_at=now,
                completed_at=now + timedelta(seconds=2),
                updated_at=now,
            )
        )
    orm = await db.read(lambda s: s.get(Run, "run_rows1"))
    assert orm is not None
    row = await read_run_row(db, org.id, "run_rows1")
    assert row is not None
    assert run_object(row) == run_object(orm)
    assert status_object(row) == status_object(orm)
    assert run_object(row)["durationMs"] == 2000
    assert await read_run_row(db, "org_other", "run_rows1") is None
    assert await read_run_row(db, org.id, "run_missing") is None
