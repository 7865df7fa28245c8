"""The agent loop of a run: provision, then model turns and their tool calls, under the
guardrails (turns, cost, working time), until the agent is done.

``RunWorkflow`` (``workflows/run.py``) drives it and owns everything the API can touch
(status, answers, cancel); this module owns the turn counter, the cost and the time
budget, and hands them on when the run continues as new.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.agent import AgentActivities
    from activities.lifecycle import LifecycleActivities
    from activities.sandbox import SandboxActivities
    from activities.sandbox_setup import SandboxSetupActivities
    from activities.threads import ThreadActivities
    from runyard.domain import ErrorCode, FailReason, RunStatus
    from runyard.tools import is_control
    from workflows import options
    from workflows.checkpoints import PATCH as CHECKPOINT_PATCH
    from workflows.checkpoints import checkpoint
    from workflows.cycle import PATCH as CYCLE_PATCH
    from workflows.cycle import turn_and_tools
    from workflows.messages import Inbox
    from workflows.outcome import ContinueAsNew, Outcome, cause_of, guardrail
    from workflows.payloads import (
        Carried,
        CollectInput,
        ProvisionInput,
        ReadyInput,
        ReplaceInput,
        RunInput,
        SandboxCall,
        SandboxRef,
        ToolCallRef,
        ToolInput,
        TurnInput,
        TurnResult,
        WaitInput,
    )
    from workflows.thread_payloads import CloseCallsInput
    from workflows.threads import PATCH as THREAD_PATCH


# A run whose sandbox host dies more often than this ends SANDBOX_UNAVAILABLE.
MAX_REBUILDS = 3


T = TypeVar("T")
Gate = Callable[[int, list[ToolCallRef]], Awaitable[tuple[set[str], "Outcome | None"]]]


class RunControl(Protocol):
    """What the loop needs of ``RunWorkflow``."""

    @property
    def waiting(self) -> bool: ...

    async def ask(self, question: WaitInput, wait_seconds: int) -> bool: ...

    def set_running(self, details: str) -> None: ...

    def set_details(self, details: str) -> None: ...


class AgentLoop:
    def __init__(self, run: RunControl, inp: RunInput) -> None:
        self.run, self.inp = run, inp
        c = inp.carried
        self.turn = c.turn if c else 0
        self.turns = c.turns if c else 0
        self.cost = c.cost_usd if c else 0.0
        self.budget = timedelta(seconds=c.budget_seconds if c else inp.guardrails.timeout_seconds)
        self.sandbox: SandboxRef | None = c.sandbox if c else None
        self._gone: SandboxRef | None = None  # the sandbox whose host a turn found gone
        self.close_requested = c.close_requested if c else False
        self.continuing = False
        self.collected = False  # the outputs were collected (the run completed)
        self._first_turn = self.turn + 1
        self.inbox = Inbox(inp.run_id, c.messages if c else None)
        self.superseded_by: str | None = None  # a newer run of the thread interrupts this one
        # Waits until a turn's gated calls are decided (``workflows/approvals.py``).
        self.gate: Gate | None = None
        # The control tools (``runyard.tools.control``): calls the workflow answers itself.
        self.controls: dict[str, Callable[[int, ToolCallRef], Awaitable[Outcome | None]]] = {
            "ask_user": self._ask_user
        }

    async def supervise(self, cancelled: Callable[[], bool]) -> Outcome:
        """Run the agent until it ends, the time budget runs out or a cancel arrives.

        ``timeoutSeconds`` is a budget of working time: it is paused while the run waits
        for input (that wait has its own limit, ``input_wait_seconds``).
        """
        agent = asyncio.create_task(self._agent())
        try:
            while True:
                started = workflow.now()
                try:
                    await workflow.wait_condition(
                        lambda: agent.done() or cancelled() or self.run.waiting,
                        timeout=max(self.budget, timedelta(0)),
                    )
                except TimeoutError:
                    self.budget = timedelta(0)
                    limit = self.inp.guardrails.timeout_seconds
                    timeout = guardrail(FailReason.TIMEOUT, "timeoutSeconds", limit, limit)
                    return await self._stop(agent, timeout)
                self.budget -= workflow.now() - started
                if agent.done():
                    return self._result(agent)
                if cancelled():
                    return await self._stop(agent, Outcome(RunStatus.CANCELLED))
                await workflow.wait_condition(
                    lambda: agent.done() or cancelled() or not self.run.waiting
                )
        except asyncio.CancelledError:  # cancelled through Temporal: the caller cleans up
            await self._stop(agent, Outcome(RunStatus.CANCELLED))
            raise

    def _result(self, agent: asyncio.Task[Outcome]) -> Outcome:
        try:
            return agent.result()
        except ContinueAsNew:
            self.continuing = True
            raise ContinueAsNew(
                Carried(
                    turn=self.turn,
                    turns=self.turns,
                    cost_usd=self.cost,
                    budget_seconds=self.budget.total_seconds(),
                    sandbox=self._sandbox(),
                    close_requested=self.close_requested,
                    messages=list(self.inbox.pending),
                )
            ) from None
        except (ActivityError, ApplicationError) as err:
            cause = cause_of(err)
            return Outcome(RunStatus.FAILED, FailReason.ERROR, cause.type, cause.message)

    @staticmethod
    async def _stop(agent: asyncio.Task[Outcome], outcome: Outcome) -> Outcome:
        agent.cancel()
        try:
            await agent
        except BaseException:
            pass
        return outcome

    async def _agent(self) -> Outcome:
        if self.sandbox is None:
            await self._provision()
        g = self.inp.guardrails
        while True:
            if self.superseded_by is not None:
                return await self.superseded()
            if self.turn >= g.max_turns:
                return guardrail(FailReason.MAX_TURNS, "maxTurns", g.max_turns, self.turn)
            if self.turn >= self._first_turn and self._history_is_long():
                raise ContinueAsNew()
            self.turn += 1
            turn = self.turn
            await self.inbox.deliver(turn, queued_too=False)  # steer: before the model call
            self.run.set_details(f"turn {turn}: the model is answering")
            res = await self._model_turn(turn)
            self.turns, self.cost = res.turns, res.cost_usd
            if res.cost_usd > g.max_cost_usd:
                return guardrail(FailReason.MAX_COST, "maxCostUsd", g.max_cost_usd, res.cost_usd)
            if self.superseded_by is not None:
                continue  # stops at the top, before another model call
            if not res.tool_calls or self.close_requested:
                if await self._messages_go_on():
                    continue
                break
            skip: set[str] = set()
            if self.gate is not None and self.inp.approvals and workflow.patched("tool-approvals"):
                # Every gated call of the turn is decided before any of them runs.
                gated = [c for c in res.tool_calls if not is_control(c.name)]
                skip, ended = await self.gate(turn, gated)
                if ended is not None:
                    return ended
            for call in res.tool_calls:
                if self.close_requested or self.superseded_by is not None:
                    break
                if call.id in skip or call.id in res.ran:
                    continue  # denied or expired: its error result is stored
                if is_control(call.name):
                    ended = await self.controls[call.name](turn, call)
                    if ended is not None:
                        return ended
                    continue
                self.run.set_details(f"turn {turn}: running {call.name}")
                await self._run_tool(turn, call.id, call.name)
            if self.close_requested:
                break
            await self._checkpoint(turn)
        if not self.close_requested:
            await self._checkpoint(self.turn)  # the final answer's boundary: forkable too
        self.run.set_details("collecting outputs")
        await self._collect()
        self.collected = True
        return Outcome(RunStatus.COMPLETED)

    async def _model_turn(self, turn: int) -> TurnResult:
        """The model's turn. Without an approval policy its tool calls run in the same
        activity, on the sandbox's host (``workflows/cycle.py``): the workflow runs only
        the calls that activity hands back (``TurnResult.ran`` lists the others)."""
        sandbox = self._sandbox()
        if self.inp.approvals or not workflow.patched(CYCLE_PATCH) or sandbox == self._gone:
            return await self._agent_turn(turn)
        try:
            return await turn_and_tools(self.inp, turn, sandbox, self._stopping)
        except ActivityError as err:
            if not options.host_lost(err):
                raise
        # The host is gone. The turn runs on any worker, as a turn without its calls
        # always did; the next call rebuilds the sandbox (a final answer needs none). Its
        # attempts number after the lost activity's, whose deltas may be stored.
        self._gone = sandbox
        return await self._agent_turn(turn, options.MODEL_TURN.retry.maximum_attempts or 0)

    async def _agent_turn(self, turn: int, attempt_base: int = 0) -> TurnResult:
        return await workflow.execute_activity_method(
            AgentActivities.run_agent_turn,
            TurnInput(run_id=self.inp.run_id, turn=turn, attempt_base=attempt_base),
            **options.MODEL_TURN.remote(summary=f"model turn {turn}"),
        )

    def _stopping(self) -> bool:
        return self.close_requested or self.superseded_by is not None

    async def _messages_go_on(self) -> bool:
        """The agent would finish: the messages still pending (queued ones too) are
        delivered to a next turn instead, and the run goes on."""
        if self.close_requested or self.turn >= self.inp.guardrails.max_turns:
            return False
        return bool(await self.inbox.deliver(self.turn + 1, queued_too=True))

    async def superseded(self) -> Outcome:
        """Stop for the run that supersedes this one: the calls of the last turn that did
        not run get an error result, and the run ends ``cancelled`` / ``RUN_SUPERSEDED``."""
        by = self.superseded_by
        message = f"not run: the run was interrupted by a newer run of its thread, {by}"
        if self.turn > 0 and workflow.patched(THREAD_PATCH):
            await workflow.execute_local_activity_method(
                ThreadActivities.close_unfinished_calls,
                CloseCallsInput(run_id=self.inp.run_id, turn=self.turn, message=message),
                **options.LIFECYCLE.local(),
            )
        return Outcome(
            RunStatus.CANCELLED,
            error_code=ErrorCode.RUN_SUPERSEDED,
            error_message=f"superseded by {by}",
            superseded_by=by,
        )

    async def _checkpoint(self, turn: int) -> None:
        """The turn's boundary: a checkpoint of the worktree if it changed (issue 26)."""
        gone = self.sandbox == self._gone  # nothing to snapshot; the next call rebuilds
        if (
            self.sandbox is not None
            and not gone
            and self.inp.has_repo
            and workflow.patched(CHECKPOINT_PATCH)
        ):
            self.run.set_details(f"turn {turn}: checkpoint")
            await checkpoint(self.inp.run_id, turn, self.sandbox, self.inp.host_lost_seconds)

    async def _ask_user(self, turn: int, call: ToolCallRef) -> Outcome | None:
        """``ask_user``: wait for the user's answer (the wait has its own limit)."""
        question = WaitInput(run_id=self.inp.run_id, turn=turn, call_id=call.id)
        wait = self.inp.input_wait_seconds
        if not await self.run.ask(question, wait) and not self.close_requested:
            return guardrail(FailReason.TIMEOUT, "inputWaitSeconds", wait, wait)
        return None

    async def _run_tool(self, turn: int, call_id: str, name: str) -> None:
        """Run one tool call on the host that holds the sandbox."""

        async def run(sandbox: SandboxRef) -> None:
            await workflow.execute_activity_method(
                SandboxActivities.run_tool,
                ToolInput(
                    run_id=self.inp.run_id, turn=turn, call_id=call_id, name=name, sandbox=sandbox
                ),
                **options.tool(self.inp.tool_timeout_seconds).remote(
                    summary=name, **options.on_host(sandbox, self.inp.host_lost_seconds)
                ),
            )

        await self._on_host(run)

    async def _on_host(self, step: Callable[[SandboxRef], Awaitable[T]]) -> T:
        """``step`` on the host that holds the sandbox. If that host is gone, the sandbox is
        rebuilt on another one and the step runs there."""
        while True:
            sandbox = self._sandbox()
            if sandbox != self._gone:  # known gone: no wait for it to fail again
                try:
                    return await step(sandbox)
                except ActivityError as err:
                    if not options.host_lost(err):
                        raise
            await self._rebuild(sandbox)

    async def _collect(self) -> None:
        """Record the outputs. If the sandbox's host is gone, what it held is gone with it
        (pushed branches are safe upstream): any worker records the final text."""
        sandbox = self._sandbox()
        gone = sandbox == self._gone
        where = {} if gone else options.on_host(sandbox, self.inp.host_lost_seconds)
        for _ in range(2):
            try:
                await workflow.execute_activity_method(
                    SandboxActivities.collect_outputs,
                    CollectInput(run_id=self.inp.run_id, sandbox=sandbox),
                    **options.COLLECT.remote(summary="collect outputs", **where),
                )
                return
            except ActivityError as err:
                if not where or not options.host_lost(err):
                    raise
                workflow.logger.warning("the sandbox's host is gone: collecting without it")
                where = {}

    async def _provision(self) -> None:
        info = await workflow.execute_activity_method(
            SandboxActivities.provision_sandbox,
            ProvisionInput(run_id=self.inp.run_id),
            **options.PROVISION.remote(summary="provision sandbox"),
        )
        self.sandbox = info.ref
        if info.setup and workflow.patched("setup-script-activity"):
            # Before sandbox.ready: the run stays pending while its sandbox is set up.
            await self._set_up(info.ref)
        await workflow.execute_local_activity_method(
            LifecycleActivities.mark_running,
            ReadyInput(run_id=self.inp.run_id, sandbox=info),
            **options.LIFECYCLE.local(),
        )
        self.run.set_running("sandbox ready")

    async def _rebuild(self, lost: SandboxRef) -> None:
        """Provision a new sandbox for the run on any host (a fresh clone, the setup script
        again) and go on with the conversation; ``sandbox.lost`` tells the watchers."""
        if lost.generation >= MAX_REBUILDS:
            raise ApplicationError(
                f"the sandbox's host was lost {lost.generation + 1} times",
                type=ErrorCode.SANDBOX_UNAVAILABLE,
                non_retryable=True,
            )
        self.run.set_details("the sandbox's host is gone: rebuilding the sandbox")
        info = await workflow.execute_activity_method(
            SandboxActivities.provision_sandbox,
            ProvisionInput(run_id=self.inp.run_id, generation=lost.generation + 1),
            **options.PROVISION.remote(summary="rebuild sandbox"),
        )
        self.sandbox = info.ref
        if info.setup:
            await self._set_up(info.ref)
        await workflow.execute_local_activity_method(
            LifecycleActivities.replace_sandbox,
            ReplaceInput(run_id=self.inp.run_id, lost=lost, sandbox=info),
            **options.LIFECYCLE.local(),
        )
        self.run.set_running("sandbox rebuilt")

    async def _set_up(self, sandbox: SandboxRef) -> None:
        """Run the template's setup script in the new sandbox, on its host."""
        self.run.set_details("running the setup script")
        await workflow.execute_activity_method(
            SandboxSetupActivities.setup_sandbox,
            SandboxCall(run_id=self.inp.run_id, sandbox=sandbox, org_id=self.inp.org_id),
            **options.SETUP.remote(
                summary="setup script", **options.on_host(sandbox, self.inp.host_lost_seconds)
            ),
        )

    def _sandbox(self) -> SandboxRef:
        if self.sandbox is None:
            raise ApplicationError("no sandbox", type=ErrorCode.INTERNAL_ERROR)
        return self.sandbox

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.get_current_history_length() >= self.inp.continue_as_new_events
            or info.is_continue_as_new_suggested()
        )
