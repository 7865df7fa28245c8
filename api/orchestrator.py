"""The API's connection to the run workflows: a ``RunClient`` (``workflows/client.py``),
connected on first use, so the API starts and serves reads while Temporal is away."""

from __future__ import annotations

import asyncio

import structlog

from api.errors import ProblemError
from runyard.db.tables import Run
from runyard.domain import ErrorCode
from runyard.settings import Settings
from runyard.temporal import connect
from workflows.client import RunClient
from workflows.payloads import Guardrails, RunInput

log = structlog.get_logger("runyard.api")


class TemporalConnector:
    """Connects on first use and again after a failure."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runs: RunClient | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> RunClient:
        if self._runs is not None:
            return self._runs
        async with self._lock:
            if self._runs is None:
                try:
                    client = await asyncio.wait_for(connect(self.settings), 10)
                except Exception as exc:
                    log.warning("temporal.unreachable", error=str(exc))
                    raise ProblemError(
                        502,
                        ErrorCode.RUN_ORCHESTRATOR_ERROR,
                        f"the workflow engine could not be reached: {exc}",
                    ) from exc
                self._runs = RunClient(client, self.settings.task_queue)
            return self._runs


def run_input(run: Run, settings: Settings) -> RunInput:
    """The run workflow's input: the run's guardrails and the operator's limits now."""
    g = run.guardrails
    return RunInput(
        run_id=run.id,
        org_id=run.org_id,
        model=run.model,
        template=run.template,
        guardrails=Guardrails(
            max_turns=g["maxTurns"],
            max_cost_usd=g["maxCostUsd"],
            timeout_seconds=g["timeoutSeconds"],
        ),
        queued_ttl_seconds=settings.queued_ttl_seconds,
        tool_timeout_seconds=settings.tool_timeout_seconds,
        input_wait_seconds=settings.input_wait_seconds,
        max_active_runs=settings.max_active_runs,
        continue_as_new_events=settings.continue_as_new_events,
        host_lost_seconds=settings.host_lost_seconds,
        thread_id=run.thread_id,
        approvals=bool(run.approvals),
    )


def already_started(run: Run) -> ProblemError:
    when = run.started_at.strftime("%Y-%m-%dT%H:%M:%SZ") if run.started_at else None
    detail = f"{run.id} is {run.status}" + (f"; it was executed at {when}" if when else "")
    return ProblemError(409, ErrorCode.RUN_ALREADY_STARTED, detail, title="Run already started")


def not_waiting(run: Run, why: str) -> ProblemError:
    return ProblemError(
        409,
        ErrorCode.RUN_NOT_WAITING_FOR_INPUT,
        f"{run.id} is not waiting for input: {why}",
        title="Run not waiting for input",
    )
