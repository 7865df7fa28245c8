"""SandboxReaperWorkflow: one round of the sandbox reaper (``activities/reaper.py``),
started every ``RUNYARD_SANDBOX_REAP_SECONDS`` by a Temporal Schedule: one per worker
host (``worker.py`` creates it), whose round runs on that host's task queue."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reaper import ReaperActivities, ReapResult


def reaper_schedule_id(task_queue: str) -> str:
    return f"runyard-sandbox-reaper-{task_queue}"


class ReapInput(BaseModel):
    task_queue: str | None = None  # the host's queue; None: the workflow's own
    seconds: int = 300  # the schedule's interval: a round waits no longer for its host


@workflow.defn(name="SandboxReaperWorkflow")
class SandboxReaperWorkflow:
    @workflow.run
    async def run(self, inp: ReapInput | None = None) -> ReapResult:
        where: dict[str, Any] = {}
        if inp is not None and inp.task_queue:
            # A host that is gone has no sandboxes left to reap: its round gives up.
            where = {
                "task_queue": inp.task_queue,
                "schedule_to_start_timeout": timedelta(seconds=inp.seconds),
            }
        return await workflow.execute_activity_method(
            ReaperActivities.reap_sandboxes,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=2),
            **where,
        )
