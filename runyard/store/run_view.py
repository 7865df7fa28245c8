"""The run object of the API contract (``runyard.run_model.Run``), built from a run row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from runyard.db.tables import Run as RunRow
from runyard.llm.pricing import empty_usage
from runyard.run_model import ForkedFrom, Guardrails, Run


def iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def duration_ms(run: RunRow) -> int | None:
    if run.started_at is None:
        return None
    end = run.completed_at or run.failed_at or run.cancelled_at
    if end is None:
        return None
    return max(0, int((end - run.started_at).total_seconds() * 1000))


# The run object's fields that are the row's columns of the same name, as stored.
_COLUMNS = (
    "id", "status", "prompt", "guidance", "repo", "template", "agent_id", "thread_id",
    "model", "sandbox", "fail_reason", "error", "pending_question", "trace_id", "route_id",
    "persona_id", "workflow_id",
)  # fmt: skip
_TIMES = ("created_at", "started_at", "completed_at", "failed_at", "cancelled_at")


def run_model(run: RunRow) -> Run:
    """The run object of a row; routes render it through ``response_model=Run``."""
    g = run.guardrails or {}
    return Run(
        object="run",
        guardrails=Guardrails(
            max_turns=g.get("maxTurns"),
            max_cost_usd=g.get("maxCostUsd"),
            timeout_seconds=g.get("timeoutSeconds"),
        ),
        outputs=run.outputs or [],
        usage={**empty_usage(), **(run.usage or {})},
        metadata=run.metadata_ or {},
        duration_ms=duration_ms(run),
        schedule_id=run.schedule_id,
        scheduled_at=iso(run.scheduled_at),
        forked_from=_forked_from(run),
        group_id=run.group_id,
        **_waiting(run),
        **{name: getattr(run, name) for name in _COLUMNS},
        **{name: iso(getattr(run, name)) for name in _TIMES},
    )


def _forked_from(run: RunRow) -> ForkedFrom | None:
    origin = run.forked_from
    if not origin:
        return None
    return ForkedFrom(run_id=origin["runId"], turn=origin["turn"])


def _waiting(run: RunRow) -> dict[str, Any]:
    """``waitingFor`` and ``pendingApprovals``, on a run that waits (left out otherwise)."""
    if run.status != "waiting_for_input":
        return {}
    if run.waiting_for == "approval":
        return {"waiting_for": "approval", "pending_approvals": run.pending_approvals or []}
    return {"waiting_for": "question", "pending_approvals": []}


def run_object(run: RunRow) -> dict[str, Any]:
    """The run object as JSON (camelCase): what webhooks and the API answer."""
    return run_model(run).wire()


def run_json(run: RunRow) -> bytes:
    """``run_object``, encoded: what get-run sends, serialized once by pydantic-core
    (a dict returned to FastAPI was validated into the response model again, then
    serialized; see ``docs/DESIGN.md``)."""
    return run_model(run).model_dump_json(by_alias=True, exclude_unset=True).encode()


def status_object(run: RunRow) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": run.status,
        "failReason": run.fail_reason,
        "durationMs": duration_ms(run),
        "usage": {**empty_usage(), **(run.usage or {})},
    }
