"""SandboxReaperWorkflow: one round of the sandbox reaper (``activities/reaper.py``),
started every ``RUNYARD_SANDBOX_REAP_SECONDS`` by a Temporal Schedule (``worker.py``
creates it once per deployment)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reaper import ReaperActivities, ReapResult


def reaper_schedule_id(task_queue: str) -> str:
    return f"runyard-sandbox-reaper-{task_queue}"


@workflow.defn(name="SandboxReaperWorkflow")
class SandboxReaperWorkflow:
    @workflow.run
    async def run(self) -> ReapResult:
        return await workflow.execute_activity_method(
            ReaperActivities.reap_sandboxes,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=2),
        )
