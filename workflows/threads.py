"""Thread strategies in the run workflow (``runyard/runs/thread_order.py``): a run of a
thread starts the next one waiting when it ends, and a superseded run stops at its next
turn boundary (``AgentLoop.superseded``)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.threads import ThreadActivities
    from workflows.payloads import RunInput
    from workflows.thread_payloads import AdvanceInput

# Marks every workflow change of this feature.
PATCH = "b25-thread-strategies"

# Starting the next run waits while the organization is at its active-run cap, a while:
# then the run stays queued (an exec, or its queued TTL, ends that).
_ADVANCE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)


async def advance(inp: RunInput) -> None:
    """The run has ended: start its thread's next waiting run. Never fails the run."""
    if inp.thread_id is None or not workflow.patched(PATCH):
        return
    try:
        await workflow.execute_activity_method(
            ThreadActivities.advance_thread,
            AdvanceInput(run_id=inp.run_id, org_id=inp.org_id, thread_id=inp.thread_id),
            start_to_close_timeout=timedelta(seconds=40),
            schedule_to_close_timeout=timedelta(minutes=10),
            retry_policy=_ADVANCE_RETRY,
            summary="start the thread's next run",
        )
    except ActivityError as err:
        workflow.logger.warning("the thread's next run was not started: %s", err)
