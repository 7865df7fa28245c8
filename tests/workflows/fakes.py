"""Fake activities under the real activity names, for in-process workflow tests.

``World`` stands in for the store, the sandbox and the model: it keeps each run's status
and events as the lifecycle activities would write them, and plays a script of model
turns. Payload types are the real ones, so a changed signature breaks these tests.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.cycle import CycleActivities
from runyard.domain import ACTIVE_STATUSES, TERMINAL_STATUSES, RunStatus
from workflows.checkpoint_payloads import CheckpointInput, CheckpointResult
from workflows.payloads import (
    AnswerInput,
    CollectInput,
    DestroyInput,
    FinishInput,
    FinishResult,
    NoteInput,
    ProvisionInput,
    ReadyInput,
    ReplaceInput,
    RunRef,
    SandboxCall,
    SandboxInfo,
    SandboxRef,
    StartInput,
    ToolCallRef,
    ToolInput,
    TurnInput,
    TurnResult,
    WaitInput,
)


@dataclass
class Turn:
    """One scripted model turn: its tool calls (``ask_user`` asks), cost and duration."""

    tools: list[str] = field(default_factory=list)
    cost: float = 0.001
    seconds: float = 0.0


@dataclass
class FakeRun:
    script: list[Turn]
    status: str = RunStatus.QUEUED
    events: list[str] = field(default_factory=list)
    turns: int = 0
    cost: float = 0.0
    fail_reason: str | None = None
    error: dict[str, str] | None = None
    guardrail: dict[str, Any] | None = None  # the guardrail.triggered event's data
    answers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    provision_started: bool = False
    tools_started: list[str] = field(default_factory=list)
    tools_run: list[str] = field(default_factory=list)
    tool_queues: list[str] = field(default_factory=list)  # the task queue each ran on
    sandbox_destroyed: bool = False
    outputs_collected: bool = False
    forwarded_at_end: list[bool] = field(default_factory=list)  # CollectInput.forward, each
    ended_before_collect: bool = False  # the terminal status was written before the collect
    # What happened to the sandbox, in order: pause, answer, resume, tool:<name> ...
    sandbox_log: list[str] = field(default_factory=list)
    # The turn boundaries checkpointed, and the task queue each checkpoint ran on.
    checkpoints: list[tuple[int, str]] = field(default_factory=list)
    stop_requested: bool = False  # request_stop wrote it (a close, an interrupt)
    attempts: list[int] = field(default_factory=list)  # each model turn's attempt, numbered


class World:
    def __init__(self) -> None:
        self.runs: dict[str, FakeRun] = {}
        self.org_active_cap_hits = 0
        # Set to make run_tool block until cancelled (a command that never ends).
        self.block_tools = False
        self.provision_seconds = 0.0
        # Set to make provisioning fail with this error code.
        self.provision_error: str | None = None
        # Set to give sandboxes a host queue: the n-th generation's is host_queues[n].
        self.host_queues: list[str] = []
        # Set to give the template a setup script that exits with this code.
        self.setup_exit: int | None = None
        # Set to make pausing the sandbox fail (it must not fail the run).
        self.pause_error = False
        # Set to make destroying the sandbox fail (the run's outcome stands).
        self.destroy_error = False
        self.checkpoint_error = False  # every checkpoint fails (issue 26)

    def add(self, run_id: str, script: list[Turn]) -> FakeRun:
        self.runs[run_id] = FakeRun(script=script)
        return self.runs[run_id]

    def _set(self, run: FakeRun, to: str, allowed: set[str], event: str | None) -> bool:
        if run.status not in allowed:
            return False
        run.status = to
        if event:
            run.events.append(event)
        return True

    # -- lifecycle (local activities) ------------------------------------------------

    @activity.defn(name="start_run")
    async def start_run(self, inp: StartInput) -> None:
        run = self.runs[inp.run_id]
        active = sum(1 for r in self.runs.values() if r.status in ACTIVE_STATUSES)
        if run.status == RunStatus.PENDING:
            return
        if run.status != RunStatus.QUEUED:
            raise ApplicationError("started", type="RUN_ALREADY_STARTED", non_retryable=True)
        if active >= inp.max_active_runs:
            self.org_active_cap_hits += 1
            raise ApplicationError("cap", type="CONCURRENT_RUN_LIMIT_EXCEEDED", non_retryable=True)
        self._set(run, RunStatus.PENDING, {RunStatus.QUEUED}, "run.started")

    @activity.defn(name="mark_running")
    async def mark_running(self, inp: ReadyInput) -> None:
        self._set(self.runs[inp.run_id], RunStatus.RUNNING, {RunStatus.PENDING}, "sandbox.ready")

    @activity.defn(name="replace_sandbox")
    async def replace_sandbox(self, inp: ReplaceInput) -> None:
        self.runs[inp.run_id].events += ["sandbox.lost", "sandbox.ready"]

    @activity.defn(name="mark_waiting")
    async def mark_waiting(self, inp: WaitInput) -> None:
        run = self.runs[inp.run_id]
        self._set(run, RunStatus.WAITING_FOR_INPUT, {RunStatus.RUNNING}, "run.waiting_for_input")

    @activity.defn(name="record_answer")
    async def record_answer(self, inp: AnswerInput) -> None:
        run = self.runs[inp.run_id]
        run.answers.append(inp.content)
        run.sandbox_log.append("answer")
        run.events.append("run.input_received")
        self._set(run, RunStatus.RUNNING, {RunStatus.WAITING_FOR_INPUT}, None)

    @activity.defn(name="queue_message")
    async def queue_message(self, inp: NoteInput) -> None:
        self.runs[inp.run_id].notes.append(inp.content)

    @activity.defn(name="request_stop")
    async def request_stop(self, inp: RunRef) -> None:
        self.runs[inp.run_id].stop_requested = True

    @activity.defn(name="finish_run")
    async def finish_run(self, inp: FinishInput) -> FinishResult:
        run = self.runs[inp.run_id]
        if run.status not in TERMINAL_STATUSES:
            if inp.guardrail:
                run.events.append("guardrail.triggered")
                run.guardrail = dict(inp.guardrail)
            run.status = inp.status
            run.fail_reason = inp.fail_reason
            if inp.error_code:
                run.error = {"code": inp.error_code, "message": inp.error_message or ""}
            run.events.append(f"run.{inp.status}")
        return FinishResult.of(run.status, run.fail_reason, run.error)

    @activity.defn(name="cancel_workflow")
    async def cancel_workflow(self, inp: RunRef) -> None:
        await activity.client().get_workflow_handle(inp.run_id).cancel()

    # -- sandbox, model ----------------------------------------------------------------

    @activity.defn(name="provision_sandbox")
    async def provision_sandbox(self, inp: ProvisionInput) -> SandboxInfo:
        self.runs[inp.run_id].provision_started = True
        await _work(self.provision_seconds)
        if self.provision_error:
            raise ApplicationError("failed", type=self.provision_error, non_retryable=True)
        if inp.generation >= len(self.host_queues) > 0:
            raise ApplicationError("no host left", type="SANDBOX_UNAVAILABLE", non_retryable=True)
        ref = SandboxRef(
            sandbox_id=f"sbx_{inp.run_id}-{inp.generation}",
            task_queue=self.host_queues[inp.generation] if self.host_queues else None,
            generation=inp.generation,
        )
        return SandboxInfo(
            ref=ref, size="m", resources={"cpuMillis": 1}, setup=self.setup_exit is not None
        )

    @activity.defn(name="setup_sandbox")
    async def setup_sandbox(self, inp: SandboxCall) -> None:
        run = self.runs[inp.run_id]
        run.sandbox_log.append("setup")
        run.events.append("sandbox.setup")
        if self.setup_exit:
            raise ApplicationError(
                f"the setup script exited {self.setup_exit}: boom",
                type="SANDBOX_SETUP_FAILED",
                non_retryable=True,
            )

    @activity.defn(name="pause_sandbox")
    async def pause_sandbox(self, inp: SandboxCall) -> None:
        self.runs[inp.run_id].sandbox_log.append("pause")
        if self.pause_error:
            raise ApplicationError("no freezer", non_retryable=True)

    @activity.defn(name="resume_sandbox")
    async def resume_sandbox(self, inp: SandboxCall) -> None:
        self.runs[inp.run_id].sandbox_log.append("resume")

    @activity.defn(name="run_agent_turn")
    async def run_agent_turn(self, inp: TurnInput) -> TurnResult:
        run = self.runs[inp.run_id]
        run.attempts.append(inp.attempt_base + activity.info().attempt)
        step = run.script[min(inp.turn, len(run.script)) - 1]
        await _work(step.seconds)
        if run.turns < inp.turn:  # a retried turn is not counted twice
            run.turns, run.cost = inp.turn, run.cost + step.cost
        calls = [ToolCallRef(id=f"t{inp.turn}.{i}", name=n) for i, n in enumerate(step.tools)]
        return TurnResult(turn=inp.turn, tool_calls=calls, turns=run.turns, cost_usd=run.cost)

    @activity.defn(name="run_tool")
    async def run_tool(self, inp: ToolInput) -> None:
        self.runs[inp.run_id].tools_started.append(inp.name)
        self.runs[inp.run_id].tool_queues.append(activity.info().task_queue)
        self.runs[inp.run_id].sandbox_log.append(f"tool:{inp.name}")
        if self.block_tools:
            await _work(3600)
        self.runs[inp.run_id].tools_run.append(inp.name)

    # What the real run_turn_and_tools (activities/cycle.py) calls: it runs on these.
    async def turn(self, inp: TurnInput, attempt: int) -> TurnResult:
        assert attempt == activity.info().attempt  # the activity's own, in a cycle
        result: TurnResult = await self.run_agent_turn(inp)
        return result

    async def tool(self, inp: ToolInput, *, unless_stopping: bool = False) -> bool:
        run = self.runs[inp.run_id]
        if run.status in TERMINAL_STATUSES or (unless_stopping and run.stop_requested):
            return False
        await self.run_tool(inp)
        return True

    @activity.defn(name="collect_outputs")
    async def collect_outputs(self, inp: CollectInput) -> None:
        self.runs[inp.run_id].outputs_collected = True
        self.runs[inp.run_id].forwarded_at_end.append(inp.forward)
        self.runs[inp.run_id].ended_before_collect = self.runs[inp.run_id].status in (
            TERMINAL_STATUSES
        )
        self.runs[inp.run_id].sandbox_log.append("collect")

    @activity.defn(name="destroy_sandbox")
    async def destroy_sandbox(self, inp: DestroyInput) -> None:
        if self.destroy_error:
            raise ApplicationError("the sandbox is stuck", type="SANDBOX_ERROR", non_retryable=True)
        self.runs[inp.run_id].sandbox_destroyed = True
        self.runs[inp.run_id].sandbox_log.append("destroy")

    @activity.defn(name="checkpoint_workspace")
    async def checkpoint_workspace(self, inp: CheckpointInput) -> CheckpointResult:
        run = self.runs[inp.run_id]
        run.checkpoints.append((inp.turn, activity.info().task_queue))
        if self.checkpoint_error:
            raise ApplicationError("git is broken", type="INTERNAL_ERROR", non_retryable=True)
        return CheckpointResult(changed=True, seq=inp.turn)

    def sandbox_activities(self) -> list[Any]:
        """What a sandbox host's own task queue serves."""
        return [
            self.run_tool,
            CycleActivities(self, self).run_turn_and_tools,
            self.collect_outputs,
            self.destroy_sandbox,
            self.setup_sandbox,
            self.pause_sandbox,
            self.resume_sandbox,
            self.checkpoint_workspace,
        ]

    def activities(self) -> list[Any]:
        return [
            self.start_run,
            self.mark_running,
            self.replace_sandbox,
            self.mark_waiting,
            self.record_answer,
            self.queue_message,
            self.finish_run,
            self.request_stop,
            self.cancel_workflow,
            self.provision_sandbox,
            self.run_agent_turn,
            *self.sandbox_activities(),
        ]


async def _work(seconds: float) -> None:
    """Take ``seconds`` of real time, heartbeating, so a cancel reaches the activity."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        activity.heartbeat()
        await asyncio.sleep(min(0.05, max(0.0, end - loop.time())))
