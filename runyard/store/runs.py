"""Status transitions of a run row, which never leave a terminal state.

Only ``activities/lifecycle.py`` calls these: the run workflow owns the status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from runyard.db.tables import Run
from runyard.domain import OPEN_STATUSES, TERMINAL_STATUSES, RunStatus
from runyard.events import keys
from runyard.events.data import EventData, RunCancelled, RunCompleted, RunFailed
from runyard.store.events import append_events, set_columns

_TIMESTAMP_FIELD = {
    RunStatus.COMPLETED: "completed_at",
    RunStatus.FAILED: "failed_at",
    RunStatus.CANCELLED: "cancelled_at",
}


def set_status(
    session: Session,
    run: Run,
    to: RunStatus,
    *,
    allowed_from: frozenset[RunStatus] | set[RunStatus],
    now: datetime,
    values: dict[str, Any] | None = None,
) -> bool:
    """Move ``run`` (locked in this transaction) to ``to`` if it is in ``allowed_from``."""
    if run.status not in allowed_from:
        return False
    vals: dict[str, Any] = {"status": to, "updated_at": now, **(values or {})}
    if to == RunStatus.PENDING and run.started_at is None:
        vals["started_at"] = now
    if to in _TIMESTAMP_FIELD:
        vals[_TIMESTAMP_FIELD[to]] = now
        if run.started_at is None:
            vals["started_at"] = now
    set_columns(session, run, vals)
    return True


def finish(
    session: Session,
    run: Run,
    status: RunStatus,
    *,
    now: datetime,
    fail_reason: str | None = None,
    error: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> bool:
    """End ``run`` with its single terminal event; a no-op on a run already terminal."""
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"{status} is not a terminal status")
    vals = {**(values or {}), "fail_reason": fail_reason, "error": error}
    if not set_status(session, run, status, allowed_from=OPEN_STATUSES, now=now, values=vals):
        return False
    data: EventData
    if status == RunStatus.FAILED:
        data = RunFailed(fail_reason=fail_reason, error=error)
    else:
        end = RunCompleted if status == RunStatus.COMPLETED else RunCancelled
        data = end(status=status) if error is None else end(status=status, error=error)
    append_events(session, run, [data.event(keys.TERMINAL)])
    return True
