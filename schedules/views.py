"""The schedule object of the API: the row, what Temporal says of it (next fires, the
runs left), and its recent fires with their runs' statuses."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col
from temporalio.client import Client, ScheduleDescription
from temporalio.service import RPCError

from runyard.db.engine import Database
from runyard.db.tables import Run
from runyard.store.run_view import iso
from schedules.notify import fire_view
from schedules.tables import ScheduleFire, ScheduleRow
from schedules.temporal import describe, upcoming

RECENT = 10
log = structlog.get_logger("runyard.schedules")


def _recent(schedule_id: str) -> Any:
    def read(s: Session) -> list[dict[str, Any]]:
        fires = list(
            s.execute(
                select(ScheduleFire)
                .where(col(ScheduleFire.schedule_id) == schedule_id)
                .order_by(col(ScheduleFire.created_at).desc(), col(ScheduleFire.id).desc())
                .limit(RECENT)
            ).scalars()
        )
        ids = [f.run_id for f in fires if f.run_id]
        found = s.execute(select(col(Run.id), col(Run.status)).where(col(Run.id).in_(ids)))
        statuses: dict[str, str] = {run_id: status for run_id, status in found.all()}
        return [fire_view(f, statuses.get(f.run_id) if f.run_id else None) for f in fires]

    return read


def schedule_object(
    row: ScheduleRow, desc: ScheduleDescription | None, recent: list[dict[str, Any]]
) -> dict[str, Any]:
    times = upcoming(desc, row)
    remaining = None
    if row.max_runs is not None:
        remaining = desc.schedule.state.remaining_actions if desc is not None else row.max_runs
    return {
        "id": row.id,
        "object": "schedule",
        "name": row.name,
        "spec": row.spec,
        "run": row.run,
        "threadId": row.thread_id,
        "overlap": row.overlap,
        "catchupWindowSeconds": row.catchup_window_seconds,
        "pauseOnFailure": row.pause_on_failure,
        "maxRuns": row.max_runs,
        "enabled": row.enabled,
        "metadata": row.metadata_ or {},
        "nextRunAt": iso(times[0]) if times else None,
        "upcoming": [iso(t) for t in times],
        "paused": row.paused,
        "notes": [{"at": n["at"], "note": n["note"]} for n in row.notes or []],
        "remainingRuns": remaining,
        "recentRuns": recent,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
    }


async def view(db: Database, client: Client, row: ScheduleRow) -> dict[str, Any]:
    """The schedule object; with Temporal unreachable, the store's part of it (no
    ``nextRunAt``, ``upcoming`` empty) rather than an error."""
    recent = await db.read(_recent(row.id))
    try:
        desc = await describe(client, row.id)
    except RPCError as exc:
        log.warning(
            "schedule.describe_failed", schedule_id=row.id, org_id=row.org_id, error=str(exc)
        )
        desc = None
    return schedule_object(row, desc, recent)
