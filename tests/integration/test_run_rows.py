"""The Core read of a run's row (runyard/store/run_rows.py) renders as the ORM row does."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, inspect, select

from runyard.db.engine import Database
from runyard.db.tables import Run
from runyard.db.types import utcnow
from runyard.store.orgs import ensure_org
from runyard.store.run_rows import _fetch, read_run_row
from runyard.store.run_view import run_json, run_object, status_object


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
    assert json.loads(run_json(row)) == run_object(orm)  # what get-run sends
    assert await read_run_row(db, "org_other", "run_rows1") is None
    assert await read_run_row(db, org.id, "run_missing") is None


async def test_driver_row_equals_sqlalchemys_in_every_column(db: Database) -> None:
    """The row is read on the driver and converted by column type: every column, set
    and unset, must come back as SQLAlchemy would return it."""
    attrs = inspect(Run).column_attrs
    table: Any = Run.__table__  # type: ignore[attr-defined]
    by_sqlalchemy = select(*(a.columns[0].label(a.key) for a in attrs)).where(
        table.c.id == bindparam("run_id")
    )
    async with db.write() as s:
        org = await ensure_org(s, "rows2")
    now = utcnow()
    full = Run(
        id="run_rows2",
        org_id=org.id,
        status="waiting_for_input",
        prompt="p é ✓",
        guidance="g",
        repo="o/r",
        template="t",
        agent_id="agt_1",
        thread_id="thr_1",
        model="scripted",
        guardrails={"maxTurns": 3, "maxCostUsd": 1.5},
        sandbox={"id": "sbx", "nested": [1, None, {"a": True}]},
        outputs=[{"type": "file", "path": "a.txt", "bytes": 3}],
        usage={"inputTokens": 7, "costUsd": 0.25},
        fail_reason="timeout",
        error={"code": "X", "message": "m"},
        metadata_={"k": "v"},
        env={"A": "1"},
        callback_url="https://example.com/cb",
        idempotency_key="idem",
        instructions="i",
        pending_question="q?",
        trace_id="tr",
        route_id="rt",
        persona_id="ps",
        workflow_id="w",
        last_seq=42,
        created_at=now,
        started_at=now + timedelta(microseconds=1),
        completed_at=now + timedelta(seconds=1),
        failed_at=now.replace(microsecond=0),
        cancelled_at=now + timedelta(days=1),
        updated_at=now,
        schedule_id="sch_1",
        scheduled_at=now,
        group_id="grp",
        forked_from={"runId": "run_a", "turn": 2},
        approvals={"policy": "all"},
        waiting_for="approval",
        pending_approvals=[{"id": "apr_1"}],
        stop_requested_at=now,
    )
    bare = Run(
        id="run_rows3", org_id=org.id, status="queued", prompt="p", model="s", workflow_id="w"
    )
    async with db.write() as s:
        s.add_all([full, bare])

    def both(conn: Connection, run_id: str) -> tuple[Any, Any]:
        return _fetch(conn, run_id), conn.execute(by_sqlalchemy, {"run_id": run_id}).first()

    for run_id in ("run_rows2", "run_rows3"):
        fast, orm_row = await db.read_core(lambda c, r=run_id: both(c, r))  # type: ignore[misc]
        assert fast is not None and orm_row is not None
        for attr in attrs:
            got, want = getattr(fast, attr.key), getattr(orm_row, attr.key)
            assert got == want and type(got) is type(want), (run_id, attr.key, got, want)
        assert fast.created_at.tzinfo is UTC
