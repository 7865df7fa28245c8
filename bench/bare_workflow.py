"""The bare Temporal baseline for bench/overhead.py: a signal, then K no-op activities."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bare_noop")
async def bare_noop(i: int) -> int:
    return i


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    def __init__(self) -> None:
        self._go = False

    @workflow.signal(name="go")
    def go(self) -> None:
        self._go = True

    @workflow.run
    async def run(self, k: int) -> int:
        await workflow.wait_condition(lambda: self._go)
        for i in range(k):
            await workflow.execute_activity(
                bare_noop, i, start_to_close_timeout=timedelta(seconds=30)
            )
        return k
