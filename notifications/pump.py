"""OutboxPumpWorkflow: the one sweeper of the outbox for a deployment.

Its id is fixed per task queue and every worker starts it with "use the existing one",
so however many workers run there is one pump. Its activity sweeps for ten minutes,
heartbeating; if its worker dies, Temporal gives the sweep to another worker once the
heartbeat is missed. The workflow continues as new now and then, so its history stays
short.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from notifications.activities import OutboxActivities
    from notifications.messages import PumpInput

_SWEEPS_PER_RUN = 100


def pump_workflow_id(task_queue: str) -> str:
    return f"runyard-outbox-pump-{task_queue}"


@workflow.defn(name="OutboxPumpWorkflow")
class OutboxPumpWorkflow:
    @workflow.run
    async def run(self, inp: PumpInput) -> None:
        for _ in range(_SWEEPS_PER_RUN):
            await workflow.execute_activity_method(
                OutboxActivities.pump_outbox,
                inp,
                start_to_close_timeout=timedelta(seconds=inp.seconds + 60),
                heartbeat_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    maximum_interval=timedelta(seconds=10),
                    maximum_attempts=0,  # forever: the pump must not stop
                ),
                summary="sweep the outbox",
            )
        workflow.continue_as_new(inp)
