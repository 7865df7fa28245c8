"""Run rows: the API's run object, and status transitions that never leave a terminal state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from runyard.db.models import Run
from runyard.models.pricing import empty_usage
from runyard.store.events import TERMINAL_EVENT_KEY, TERMINAL_STATUSES, NewEvent, append_events

ACTIVE_STATUSES = frozenset({"pending", "running", "waiting_for_input"})
_TIMESTAMP_FIELD = {"completed": "completed_at", "failed": "failed_at", "cancelled": "cancelled_at"}


def iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def duration_ms(run: Run) -> int | None:
    if run.started_at is None:
        return None
    end = run.completed_at or run.failed_at or run.cancelled_at
    if end is None:
        return None
    return max(0, int((end - run.started_at).total_seconds() * 1000))


def run_object(run: Run) -> dict[str, Any]:
    """The run object of the API contract (camelCase)."""
    g = run.guardrails or {}
    return {
        "id": run.id,
        "object": "run",
        "status": run.status,
        "prompt": run.prompt,
        "guidance": run.guidance,
        "repo": run.repo,
        "template": run.template,
        "agentId": run.agent_id,
        "threadId": run.thread_id,
        "model": run.model,
        "guardrails": {
            "maxTurns": g.get("maxTurns"),
            "maxCostUsd": g.get("maxCostUsd"),
            "timeoutSeconds": g.get("timeoutSeconds"),
        },
        "sandbox": run.sandbox,
        "outputs": run.outputs or [],
        "usage": {**empty_usage(), **(run.usage or {})},
        "failReason": run.fail_reason,
        "error": run.error,
        "metadata": run.metadata_ or {},
        "pendingQuestion": run.pending_question,
        "traceId": run.trace_id,
        "routeId": run.route_id,
        "personaId": run.persona_id,
        "workflowId": run.workflow_id,
        "createdAt": iso(run.created_at),
        "startedAt": iso(run.started_at),
        "completedAt": iso(run.completed_at),
        "failedAt": iso(run.failed_at),
        "cancelledAt": iso(run.cancelled_at),
        "durationMs": duration_ms(run),
    }


def status_object(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": run.status,
        "failReason": run.fail_reason,
        "durationMs": duration_ms(run),
        "usage": {**empty_usage(), **(run.usage or {})},
    }


async def set_status(
    session: AsyncSession,
    run: Run,
    to: str,
    *,
    allowed_from: frozenset[str] | set[str],
    now: datetime,
    values: dict[str, Any] | None = None,
) -> bool:
    """Move ``run`` (locked in this transaction) to ``to`` if it is in ``allowed_from``."""
    if run.status not in allowed_from:
        return False
    vals: dict[str, Any] = {"status": to, "updated_at": now, **(values or {})}
    if to == "pending" and run.started_at is None:
        vals["started_at"] = now
    if to in _TIMESTAMP_FIELD:
        vals[_TIMESTAMP_FIELD[to]] = now
        if run.started_at is None:
            vals["started_at"] = now
    await session.execute(update(Run).where(col(Run.id) == run.id).values(**vals))
    for k, v in vals.items():
        setattr(run, k, v)
    return True


async def finish(
    session: AsyncSession,
    run: Run,
    status: str,
    *,
    now: datetime,
    fail_reason: str | None = None,
    error: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> bool:
    """End ``run`` with its single terminal event; a no-op on a run already terminal."""
    assert status in TERMINAL_STATUSES
    vals = {**(values or {}), "fail_reason": fail_reason, "error": error}
    if not await set_status(
        session, run, status, allowed_from={"queued", *ACTIVE_STATUSES}, now=now, values=vals
    ):
        return False
    data: dict[str, Any] = {"status": status}
    if status == "failed":
        data = {"failReason": fail_reason, "error": error}
    elif error is not None:
        data["error"] = error
    await append_events(session, run, [NewEvent(TERMINAL_EVENT_KEY, f"run.{status}", data)])
    return True
