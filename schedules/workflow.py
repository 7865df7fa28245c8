"""ScheduleFireWorkflow: one fire of a schedule, started by its Temporal Schedule.

::

    create the run (activity, through the run service; idempotent on the schedule and
    the scheduled time) ─▶ start RunWorkflow as a child (id = run id) ─▶ exec it
    (activity, within the active-run cap) ─▶ wait for the run to end

A fire that cannot start (active-run cap, credits, template deleted, thread busy) is
recorded by the activities as a skipped fire, announced, and for credits or a deleted
template the schedule is paused with a note. Because this workflow lives as long as its
run, the schedule's overlap policy governs the agent run itself; when Temporal cancels it
(``cancel_other``) the run is superseded: it ends ``cancelled`` with ``RUN_SUPERSEDED``.
The child is abandoned if this workflow is terminated: a run never dies with its fire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import (
    RetryPolicy,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from runyard.domain import ErrorCode, RunStatus
    from schedules.activities import ScheduleActivities
    from schedules.payloads import (
        SA_SCHEDULED_AT,
        CreateFire,
        FireInput,
        FireResult,
        Made,
        PauseFire,
        StartFire,
    )
    from workflows.payloads import (
        SA_MODEL,
        SA_ORG,
        SA_STATUS,
        SA_TEMPLATE,
        RunInput,
        ScheduleReplaceRequest,
    )
    from workflows.run import RunWorkflow

T = TypeVar("T")
Child = workflow.ChildWorkflowHandle[RunWorkflow, dict[str, object]]
_TIMEOUT = timedelta(seconds=60)
_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=8)


@workflow.defn(name="ScheduleFireWorkflow")
class ScheduleFireWorkflow:
    def __init__(self) -> None:
        self._superseded = False  # Temporal cancelled this fire (overlap cancel_other)
        self._child: Child | None = None

    @workflow.run
    async def run(self, inp: FireInput) -> FireResult:
        result = await self._fire(inp)
        if self._superseded:
            raise asyncio.CancelledError()  # the fire ends cancelled, as Temporal asked
        return result

    async def _fire(self, inp: FireInput) -> FireResult:
        info = workflow.info()
        at = inp.scheduled_at or info.typed_search_attributes.get(SA_SCHEDULED_AT)
        at = at or workflow.now()
        workflow.set_current_details(f"creating the run of {inp.schedule_id} for {at}")
        made: Made = await self._through(
            workflow.execute_activity_method(
                ScheduleActivities.create_scheduled_run,
                CreateFire(
                    schedule_id=inp.schedule_id,
                    workflow_id=info.workflow_id,
                    scheduled_at=at,
                    max_active_runs=inp.max_active_runs,
                ),
                summary="create the run",
                start_to_close_timeout=_TIMEOUT,
                retry_policy=_RETRY,
            )
        )
        if made.run_input is None or made.run_id is None:
            return FireResult(status="skipped", reason=made.skipped)
        run_input = made.run_input
        try:
            child = await self._through(
                workflow.start_child_workflow(
                    "RunWorkflow",
                    run_input,
                    id=run_input.run_id,
                    result_type=dict,
                    search_attributes=_attributes(run_input),
                    # A run id is never reused: a time already fired is a duplicate.
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    cancellation_type=workflow.ChildWorkflowCancellationType.ABANDON,
                    static_summary=made.summary[:200],
                )
            )
        except WorkflowAlreadyStartedError:  # an earlier fire for this time made it
            return FireResult(status="duplicate", run_id=made.run_id)
        self._child = child
        if self._superseded:  # cancelled before its run started: the run never starts
            await self._supersede()
        else:
            started = await self._through(
                workflow.execute_activity_method(
                    ScheduleActivities.start_scheduled_run,
                    StartFire(
                        schedule_id=inp.schedule_id,
                        workflow_id=info.workflow_id,
                        run_id=made.run_id,
                        scheduled_at=at,
                    ),
                    summary="exec the run",
                    start_to_close_timeout=_TIMEOUT,
                    retry_policy=_RETRY,
                )
            )
            if not started.started:  # refused: the run and its workflow are gone again
                return FireResult(status="skipped", reason=started.skipped)
        workflow.set_current_details(f"waiting for {made.run_id}")
        status, code, message = await self._through(_outcome(child))
        if status == RunStatus.FAILED and made.pause_on_failure:
            await workflow.execute_activity_method(
                ScheduleActivities.pause_schedule,
                PauseFire(
                    schedule_id=inp.schedule_id,
                    note=f"paused on failure: run {made.run_id} failed ({code}: {message})",
                    key=f"failed:{made.run_id}",
                ),
                summary="pause on failure",
                start_to_close_timeout=_TIMEOUT,
                retry_policy=_RETRY,
            )
        return FireResult(status="fired", run_id=made.run_id, run_status=status)

    async def _through(self, step: Awaitable[T]) -> T:
        """``step`` to its end even when Temporal cancels this fire meanwhile: then the
        run (once it exists) is superseded, and the fire ends cancelled afterwards."""
        task = asyncio.ensure_future(step)
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if not self._superseded:
                    self._superseded = True
                    if self._child is not None:
                        await self._supersede()

    async def _supersede(self) -> None:
        assert self._child is not None
        await self._child.signal(RunWorkflow.replaced_by_schedule, ScheduleReplaceRequest())


def _attributes(inp: RunInput) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(SA_STATUS, RunStatus.QUEUED),
            SearchAttributePair(SA_ORG, inp.org_id),
            SearchAttributePair(SA_MODEL, inp.model),
            SearchAttributePair(SA_TEMPLATE, inp.template),
        ]
    )


async def _outcome(
    child: workflow.ChildWorkflowHandle[RunWorkflow, dict[str, object]],
) -> tuple[str, str, str]:
    """How the child run ended: (status, error code, message). Its workflow ends the way
    the run did (RunWorkflow's ``_conclude``)."""
    try:
        await child
    except ChildWorkflowError as err:
        cause = err.cause
        if isinstance(cause, CancelledError):
            return RunStatus.CANCELLED, "", ""
        if isinstance(cause, ApplicationError):
            return RunStatus.FAILED, cause.type or ErrorCode.INTERNAL_ERROR, cause.message
        return RunStatus.FAILED, ErrorCode.INTERNAL_ERROR, str(cause or err)
    return RunStatus.COMPLETED, "", ""
