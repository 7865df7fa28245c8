"""DeliveryWorkflow: one message to one URL, retried on a schedule that survives crashes.

The schedule (seconds between attempts) comes from RUNYARD_WEBHOOK_RETRY_SCHEDULE; a
``Retry-After`` answer can only lengthen the next wait. Every attempt carries the same
``webhook-id``. The workflow's id is the delivery's id.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from notifications.activities import DeliveryActivities
    from notifications.messages import (
        DELIVERY_WORKFLOW,
        AttemptInput,
        AttemptOutcome,
        DeliveryInput,
    )

_MAX_WAIT = 24 * 3600.0


@workflow.defn(name=DELIVERY_WORKFLOW)
class DeliveryWorkflow:
    @workflow.run
    async def run(self, inp: DeliveryInput) -> str:
        extra = 0.0
        outcome = AttemptOutcome(status="failed")
        for n, gap in enumerate(inp.schedule, start=1):
            wait = min(max(gap, extra), _MAX_WAIT)
            if wait > 0:
                workflow.set_current_details(f"attempt {n} in {wait:.0f} s")
                await workflow.sleep(timedelta(seconds=wait))
            outcome = await workflow.execute_activity_method(
                DeliveryActivities.attempt_delivery,
                AttemptInput(delivery_id=inp.delivery_id, attempt=n, last=n == len(inp.schedule)),
                start_to_close_timeout=timedelta(seconds=30),  # the HTTP timeout is 15 s
                # Retries here only cover the worker's own failures (store unreachable …);
                # the receiver's answers are handled by the schedule above.
                retry_policy=RetryPolicy(maximum_attempts=5, initial_interval=timedelta(seconds=1)),
                summary=f"attempt {n}",
            )
            if outcome.status != "retry":
                return outcome.status
            extra = outcome.retry_after or 0.0
        return outcome.status
