"""The API's side of the run workflow: start it, send exec, signal cancel.

Temporal failures become problem documents: an unreachable server is 502
``RUN_ORCHESTRATOR_ERROR``; a second exec is 409 ``RUN_ALREADY_STARTED``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ProblemError
from runyard.db.models import Run
from runyard.settings import Settings
from runyard.temporal import connect
from workflows.models import (
    SA_MODEL,
    SA_ORG,
    SA_STATUS,
    SA_TEMPLATE,
    WORKFLOW_NAME,
    CancelInput,
    CloseInput,
    ExecInput,
    ExecResult,
    Guardrails,
    InputResult,
    InputUpdate,
    RunInput,
)

log = structlog.get_logger("runyard.api")
_RPC_TIMEOUT = timedelta(seconds=10)
# An update needs a worker to run a workflow task; after a worker crash or under load
# that can take longer than a plain RPC.
_UPDATE_TIMEOUT = timedelta(seconds=30)


class TemporalConnector:
    """Connects on first use and again after a failure, so the API starts without Temporal."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await asyncio.wait_for(connect(self.settings), 10)
                except Exception as exc:
                    raise orchestrator_error(exc) from exc
            return self._client


def orchestrator_error(exc: BaseException) -> ProblemError:
    log.warning("temporal.unreachable", error=str(exc))
    return ProblemError(
        502, "RUN_ORCHESTRATOR_ERROR", f"the workflow engine could not be reached: {exc}"
    )


async def start_run_workflow(client: Client, run: Run, settings: Settings, *, start: bool) -> None:
    g = run.guardrails
    inp = RunInput(
        run_id=run.id,
        org_id=run.org_id,
        model=run.model,
        template=run.template,
        guardrails=Guardrails(
            max_turns=g["maxTurns"],
            max_cost_usd=g["maxCostUsd"],
            timeout_seconds=g["timeoutSeconds"],
        ),
        start=start,
        queued_ttl_seconds=settings.queued_ttl_seconds,
        tool_timeout_seconds=settings.tool_timeout_seconds,
        input_wait_seconds=settings.input_wait_seconds,
    )
    attrs = TypedSearchAttributes(
        [
            SearchAttributePair(SA_STATUS, run.status),
            SearchAttributePair(SA_ORG, run.org_id),
            SearchAttributePair(SA_MODEL, run.model),
            SearchAttributePair(SA_TEMPLATE, run.template),
        ]
    )
    await client.start_workflow(
        WORKFLOW_NAME,
        inp,
        id=run.workflow_id,
        task_queue=settings.task_queue,
        search_attributes=attrs,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        static_summary=run.prompt[:200],
        rpc_timeout=_RPC_TIMEOUT,
    )


async def send_exec(
    client: Client, run: Run, *, is_still_queued: Callable[[], Awaitable[bool]]
) -> None:
    """Send the ``exec`` update; only one exec of a run ever succeeds."""
    handle = client.get_workflow_handle(run.workflow_id)
    try:
        await handle.execute_update(
            "exec", ExecInput(), result_type=ExecResult, rpc_timeout=_UPDATE_TIMEOUT
        )
    except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
        raise update_timeout("exec") from exc
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == "RUN_ALREADY_STARTED":
            raise already_started(run) from exc
        raise ProblemError(409, "CONFLICT", f"exec was refused: {cause}") from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND or not await is_still_queued():
            # The workflow has ended (cancelled or expired) or was started meanwhile.
            raise already_started(run) from exc
        raise orchestrator_error(exc) from exc


def update_timeout(name: str) -> ProblemError:
    return ProblemError(
        502,
        "RUN_ORCHESTRATOR_ERROR",
        f"no worker accepted the {name} in time (is a worker running?); it may still be "
        "applied: retry with the same Idempotency-Key, or read the run's status",
    )


def already_started(run: Run) -> ProblemError:
    when = run.started_at.strftime("%Y-%m-%dT%H:%M:%SZ") if run.started_at else None
    detail = f"{run.id} is {run.status}" + (f"; it was executed at {when}" if when else "")
    return ProblemError(409, "RUN_ALREADY_STARTED", detail, title="Run already started")


async def send_input(connector: TemporalConnector, run: Run, content: str, key: str | None) -> None:
    """Answer a waiting run through the ``input`` update.

    With an idempotency key the update id is derived from it: Temporal answers a repeated
    update id with the first outcome, so a repeated answer counts once.
    """
    client = await connector()
    handle = client.get_workflow_handle(run.workflow_id)
    try:
        await handle.execute_update(
            "input",
            InputUpdate(content=content),
            id=f"input:{key}" if key else None,
            result_type=InputResult,
            rpc_timeout=_UPDATE_TIMEOUT,
        )
    except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
        raise update_timeout("input") from exc
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == "RUN_NOT_WAITING_FOR_INPUT":
            raise not_waiting(run, str(cause.message)) from exc
        raise ProblemError(409, "CONFLICT", f"input was refused: {cause}") from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # the workflow has ended
            raise not_waiting(run, "the run has ended") from exc
        raise orchestrator_error(exc) from exc


def not_waiting(run: Run, why: str) -> ProblemError:
    return ProblemError(
        409,
        "RUN_NOT_WAITING_FOR_INPUT",
        f"{run.id} is not waiting for input: {why}",
        title="Run not waiting for input",
    )


async def signal_close(connector: TemporalConnector, run: Run) -> None:
    client = await connector()
    try:
        await client.get_workflow_handle(run.workflow_id).signal(
            "close", CloseInput(), rpc_timeout=_RPC_TIMEOUT
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise orchestrator_error(exc) from exc


async def signal_cancel(connector: TemporalConnector, run: Run, reason: str | None) -> None:
    """Tell the workflow to stop; a workflow that already ended needs no telling.

    The store already says cancelled when this is called, so a failure here is logged,
    not raised: the run's next model turn reads the store and stops.
    """
    try:
        client = await connector()
        await client.get_workflow_handle(run.workflow_id).signal(
            "cancel", CancelInput(reason=reason), rpc_timeout=_RPC_TIMEOUT
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            log.warning("cancel.signal_failed", run_id=run.id, error=str(exc))
    except ProblemError as exc:
        log.warning("cancel.signal_failed", run_id=run.id, error=exc.detail)
