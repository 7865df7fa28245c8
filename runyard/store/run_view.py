"""The run object of the API contract, built from a run row (camelCase)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from runyard.db.tables import Run
from runyard.llm.pricing import empty_usage


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
