"""The run's sandbox outside the agent loop's turns (``RunWorkflow``'s part of it):
paused while the run waits for an answer or an approval, resumed after, and at the run's
end its unpushed work kept and the sandbox destroyed — beside the terminal write, whose
outcome a failed destroy cannot change (a sandbox left behind is the reaper's)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.sandbox import SandboxActivities
    from workflows import options
    from workflows.agent_loop import AgentLoop
    from workflows.payloads import (
        CollectInput,
        DestroyInput,
        RunInput,
        SandboxCall,
        SandboxRef,
    )

SandboxMethod = Callable[[SandboxActivities, SandboxCall], Awaitable[None]]


class RunSandbox:
    def __init__(
        self,
        inp: RunInput,
        loop: AgentLoop,
        set_details: Callable[[str], None],
        stopped: Callable[[], bool],
    ) -> None:
        self._inp, self._loop = inp, loop
        self._set_details = set_details
        self._stopped = stopped  # cancelled or superseded: nothing more goes upstream
        self.paused: SandboxRef | None = None  # the sandbox paused while the run waits
        self.teardown: asyncio.Task[None] | None = None  # the destroy beside the terminal write

    async def pause_waiting(self) -> None:
        """Pause the sandbox while the run waits (an answer, approvals): a waiting sandbox
        costs nothing. A cancel lets ``destroy`` resume it (to keep its changes)."""
        if self._loop.sandbox is not None and workflow.patched("pause-while-waiting"):
            self.paused = self._loop.sandbox
            if not await self._pause_or_resume(SandboxActivities.pause_sandbox, self.paused):
                self.paused = None  # its host is gone: nothing to resume there

    async def resume(self) -> None:
        paused, self.paused = self.paused, None
        if paused is not None:
            await self._pause_or_resume(SandboxActivities.resume_sandbox, paused)

    async def destroy(self, *, beside_end: bool = False) -> None:
        sandbox = self._loop.sandbox
        if sandbox is None:
            return
        self._loop.sandbox = None
        where = options.on_host(sandbox, self._inp.host_lost_seconds)
        await self.resume()  # cancelled while waiting: thawed to keep its changes
        if not self._loop.collected and workflow.patched("keep-changes-of-every-ending"):
            # Nothing is lost: the unpushed work of a run that did not complete (failed,
            # cancelled) is kept too, as changes.patch, before the sandbox goes.
            self._set_details("keeping the workspace's changes")
            keep = CollectInput(run_id=self._inp.run_id, sandbox=sandbox, include_text=False)
            if self._stopped() and workflow.patched("no-forwarding-after-cancel"):
                # A cancelled run sends nothing more upstream: its work is only kept.
                keep.forward = False
            try:
                await workflow.execute_activity_method(
                    SandboxActivities.collect_outputs,
                    keep,
                    **options.COLLECT.remote(summary="keep the workspace's changes", **where),
                )
            except (ActivityError, ApplicationError) as err:  # a lost sandbox: nothing to keep
                workflow.logger.warning("could not keep the workspace's changes: %s", err)
                if options.host_lost(err):
                    return  # its host is gone, and the sandbox with it
        self._set_details("destroying the sandbox")
        destroy = workflow.execute_activity_method(
            SandboxActivities.destroy_sandbox,
            DestroyInput(run_id=self._inp.run_id, sandbox=sandbox),
            **options.DESTROY.remote(summary="destroy sandbox", **where),
        )
        if beside_end:
            self.teardown = asyncio.create_task(_destroyed(destroy))
            return
        try:
            await destroy
        except ActivityError as err:
            if not options.host_lost(err):
                raise
            workflow.logger.warning("the sandbox's host is gone, and the sandbox with it")

    async def _pause_or_resume(self, method: SandboxMethod, sandbox: SandboxRef) -> bool:
        """Never fatal: a sandbox that could not be paused just keeps running. False if
        the sandbox's host is gone (the next tool call rebuilds the sandbox)."""
        try:
            await workflow.execute_activity_method(
                method,
                SandboxCall(run_id=self._inp.run_id, sandbox=sandbox, org_id=self._inp.org_id),
                # Waits for a pause being cancelled to finish: a resume never overtakes it.
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                **options.PAUSE.remote(
                    summary=method.__name__.removesuffix("_sandbox"),
                    **options.on_host(sandbox, self._inp.host_lost_seconds),
                ),
            )
        except (ActivityError, ApplicationError) as err:
            workflow.logger.warning("could not pause or resume the sandbox: %s", err)
            return not options.host_lost(err)
        return True


async def _destroyed(destroy: Awaitable[None]) -> None:
    """A destroy that runs after the run's outcome is decided: its failure cannot change
    that outcome. A sandbox left behind is the reaper's (``workflows/reaper.py``)."""
    try:
        await destroy
    except ActivityError as err:
        if options.host_lost(err):
            workflow.logger.warning("the sandbox's host is gone, and the sandbox with it")
        else:
            workflow.logger.warning("the sandbox was not destroyed (the reaper will): %s", err)
