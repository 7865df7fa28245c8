"""EventRetentionWorkflow: one purge of expired events, started hourly by a Temporal
Schedule (``worker.py`` creates it once per deployment)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.retention import PurgeResult, RetentionActivities


def retention_schedule_id(task_queue: str) -> str:
    return f"runyard-event-retention-{task_queue}"


@workflow.defn(name="EventRetentionWorkflow")
class EventRetentionWorkflow:
    @workflow.run
    async def run(self) -> PurgeResult:
        return await workflow.execute_activity_method(
            RetentionActivities.purge_expired_events,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
