"""The typed way to reach a run's workflow, for the API and any program with a Temporal
client: every call names the workflow's own method (``RunWorkflow.exec`` …), so "go to
definition" lands on the code that answers it.

Failures come back as Runyard's errors (``runyard/errors.py``): what the workflow
refused, with its code; ``RunNotActive`` when the workflow has already ended (the store
then says how); ``OrchestratorUnavailable`` when Temporal could not be reached in time.
The HTTP side of them is the API's business (``api/errors.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from runyard.domain import RunStatus
from runyard.errors import OrchestratorUnavailable, RunNotActive, error_for
from workflows.approval_payloads import DecideRequest, DecideResult
from workflows.message_payloads import PostMessageRequest, PostMessageResult
from workflows.payloads import (
    SA_MODEL,
    SA_ORG,
    SA_STATUS,
    SA_TEMPLATE,
    AnswerRequest,
    CancelRequest,
    CancelResult,
    CloseRequest,
    ExecRequest,
    MessageRequest,
    MessageResult,
    RunInput,
)
from workflows.run import RunWorkflow
from workflows.thread_payloads import SupersedeRequest, SupersedeResult

T = TypeVar("T")
_RPC_TIMEOUT = timedelta(seconds=10)
# An update needs a worker to run a workflow task (and its local activity); after a
# worker crash or under load that can take longer than a plain RPC.
_UPDATE_TIMEOUT = timedelta(seconds=30)


class RunClient:
    def __init__(self, client: Client, task_queue: str) -> None:
        self.temporal = client
        self.task_queue = task_queue

    async def start(self, inp: RunInput, *, summary: str, execute: bool) -> None:
        """Start the run's workflow (id = run id); with ``execute``, exec it in the same
        round trip (update-with-start), within the organization's active-run cap."""
        attrs = TypedSearchAttributes(
            [
                SearchAttributePair(SA_STATUS, RunStatus.QUEUED),
                SearchAttributePair(SA_ORG, inp.org_id),
                SearchAttributePair(SA_MODEL, inp.model),
                SearchAttributePair(SA_TEMPLATE, inp.template),
            ]
        )
        if not execute:
            await _rpc(
                self.temporal.start_workflow(
                    RunWorkflow.run,
                    inp,
                    id=inp.run_id,
                    task_queue=self.task_queue,
                    search_attributes=attrs,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    static_summary=summary[:200],
                    rpc_timeout=_RPC_TIMEOUT,
                )
            )
            return
        start = WithStartWorkflowOperation(
            RunWorkflow.run,
            inp,
            id=inp.run_id,
            task_queue=self.task_queue,
            search_attributes=attrs,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=summary[:200],
        )
        await _update(
            self.temporal.execute_update_with_start_workflow(
                RunWorkflow.exec,
                ExecRequest(),
                start_workflow_operation=start,
                rpc_timeout=_UPDATE_TIMEOUT,
            )
        )

    async def exec(self, run_id: str) -> None:
        handle = self.temporal.get_workflow_handle(run_id)
        await _update(
            handle.execute_update(RunWorkflow.exec, ExecRequest(), rpc_timeout=_UPDATE_TIMEOUT)
        )

    async def cancel(self, run_id: str) -> CancelResult:
        handle = self.temporal.get_workflow_handle(run_id)
        return await _update(
            handle.execute_update(RunWorkflow.cancel, CancelRequest(), rpc_timeout=_UPDATE_TIMEOUT)
        )

    async def answer(self, run_id: str, content: str, *, key: str | None) -> None:
        """Answer a waiting run. With a key, the update id derives from it: Temporal answers
        a repeated update id with the first outcome, so a repeated answer counts once."""
        handle = self.temporal.get_workflow_handle(run_id)
        await _update(
            handle.execute_update(
                RunWorkflow.answer,
                AnswerRequest(content=content),
                id=f"input:{key}" if key else None,
                rpc_timeout=_UPDATE_TIMEOUT,
            )
        )

    async def message(self, run_id: str, content: str) -> MessageResult:
        handle = self.temporal.get_workflow_handle(run_id)
        return await _update(
            handle.execute_update(
                RunWorkflow.message, MessageRequest(content=content), rpc_timeout=_UPDATE_TIMEOUT
            )
        )

    async def post_message(self, run_id: str, req: PostMessageRequest) -> PostMessageResult:
        """A message to a busy run; the update id is the message's, so a retried post is
        accepted once (Temporal answers a repeated update id with the first outcome)."""
        handle = self.temporal.get_workflow_handle(run_id)
        return await _update(
            handle.execute_update(
                RunWorkflow.post_message,
                req,
                id=f"message:{req.message_id}",
                rpc_timeout=_UPDATE_TIMEOUT,
            )
        )

    async def supersede(self, run_id: str, by: str) -> SupersedeResult:
        """A newer run of the thread (``by``) interrupts this one."""
        handle = self.temporal.get_workflow_handle(run_id)
        return await _update(
            handle.execute_update(
                RunWorkflow.supersede,
                SupersedeRequest(by=by),
                id=f"supersede:{by}",
                rpc_timeout=_UPDATE_TIMEOUT,
            )
        )

    async def decide(self, run_id: str, req: DecideRequest) -> DecideResult:
        """Decide approvals that wait. With a key, the update id derives from it, so a
        repeated request is applied once (Temporal answers it with the first outcome)."""
        handle = self.temporal.get_workflow_handle(run_id)
        return await _update(
            handle.execute_update(
                RunWorkflow.decide,
                req,
                id=f"approve:{req.key}" if req.key else None,
                rpc_timeout=_UPDATE_TIMEOUT,
            )
        )

    async def close(self, run_id: str) -> None:
        handle = self.temporal.get_workflow_handle(run_id)
        await _rpc(handle.signal(RunWorkflow.close, CloseRequest(), rpc_timeout=_RPC_TIMEOUT))

    async def discard(self, run_id: str, reason: str) -> None:
        """Terminate the workflow of a run whose creation was refused (it never existed
        for the client); a workflow already gone needs nothing."""
        handle = self.temporal.get_workflow_handle(run_id)
        try:
            await handle.terminate(reason=reason, rpc_timeout=_RPC_TIMEOUT)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise OrchestratorUnavailable(str(exc)) from exc


async def _rpc(call: Awaitable[T]) -> T:
    try:
        return await call
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RunNotActive("the run's workflow has ended") from exc
        raise OrchestratorUnavailable(str(exc)) from exc


async def _update(call: Awaitable[T]) -> T:
    try:
        return await _rpc(call)
    except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
        raise OrchestratorUnavailable(
            "no worker accepted the request in time (is a worker running?); it may still be "
            "applied: retry with the same Idempotency-Key, or read the run's status"
        ) from exc
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type:
            raise error_for(cause.type, cause.message) from exc
        raise error_for("INTERNAL_ERROR", str(cause)) from exc
