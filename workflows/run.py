"""RunWorkflow: one agent run, from queued to a terminal status.

queued ──exec──▶ pending ──▶ running ──▶ completed | failed, and cancel from any of them.
The workflow only decides; every side effect (sandbox, model, store) is an activity.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.agent import AgentActivities
    from activities.sandbox import SandboxActivities
    from activities.store import StoreActivities
    from workflows.models import (
        SA_STATUS,
        WORKFLOW_NAME,
        AnswerInput,
        CancelInput,
        CloseInput,
        DestroyInput,
        ExecInput,
        ExecResult,
        FinishInput,
        FinishResult,
        InputResult,
        InputUpdate,
        ProvisionInput,
        RunInput,
        RunRef,
        RunState,
        SandboxRef,
        ToolInput,
        TurnInput,
        WaitInput,
    )


# Errors that retrying cannot fix; activities raise them as non-retryable ApplicationErrors.
_QUICK = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5)
_MODEL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=4,
)
# Workers heartbeat every second; a worker that died is noticed after this long.
_HEARTBEAT = timedelta(seconds=10)
# Store-only activities take milliseconds; if their worker dies, retry after this long.
_STORE_TIMEOUT = timedelta(seconds=15)


@dataclass
class Outcome:
    status: str
    fail_reason: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    guardrail: dict[str, Any] | None = None


def _error_outcome(err: BaseException) -> Outcome:
    cause: BaseException | None = err
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError) and cause.type:
        return Outcome("failed", "error", cause.type, cause.message)
    return Outcome("failed", "error", "INTERNAL_ERROR", str(cause or err))


@workflow.defn(name=WORKFLOW_NAME)
class RunWorkflow:
    def __init__(self) -> None:
        self._exec_requested = False
        self._cancel_requested = False
        self._closing = False
        self._status = "queued"
        self._turns = 0
        self._cost = 0.0
        self._sandbox: SandboxRef | None = None
        self._waiting = False
        self._answer: str | None = None
        self._close_requested = False
        self._unrecorded: AnswerInput | None = None  # handed to the next activity

    # -- messages ------------------------------------------------------------------

    @workflow.update(name="exec")
    def exec(self, _: ExecInput) -> ExecResult:
        # The validator already refused a second exec; this guards two execs admitted
        # in the same workflow task (the first handler flips the flag before the second runs).
        if self._exec_requested or self._closing or self._cancel_requested:
            raise ApplicationError("run already started", type="RUN_ALREADY_STARTED")
        self._exec_requested = True
        return ExecResult(status="pending")

    @exec.validator
    def _validate_exec(self, _: ExecInput) -> None:
        if self._exec_requested or self._closing or self._cancel_requested:
            raise ApplicationError(f"run is {self._status}", type="RUN_ALREADY_STARTED")

    @workflow.signal(name="cancel")
    def cancel(self, _: CancelInput) -> None:
        self._cancel_requested = True

    @workflow.update(name="input")
    def input(self, update: InputUpdate) -> InputResult:
        # As with exec: of two answers admitted together, the first handler wins.
        if not self._waiting or self._answer is not None:
            raise ApplicationError("run is not waiting for input", type="RUN_NOT_WAITING_FOR_INPUT")
        self._answer = update.content
        return InputResult()

    @input.validator
    def _validate_input(self, update: InputUpdate) -> None:
        if not self._waiting or self._answer is not None:
            raise ApplicationError(
                f"run is {self._status}, not waiting for input", type="RUN_NOT_WAITING_FOR_INPUT"
            )

    @workflow.signal(name="close")
    def close(self, _: CloseInput) -> None:
        self._close_requested = True

    @workflow.query(name="state")
    def state(self) -> RunState:
        return RunState(status=self._status, turns=self._turns, cost_usd=self._cost)

    # -- the run -------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: RunInput) -> FinishResult:
        # An exec update can arrive in the very first activation, before run() starts.
        self._exec_requested = self._exec_requested or inp.start
        self._set_status("pending" if inp.start else "queued", "waiting for exec")
        try:
            await workflow.wait_condition(
                lambda: self._exec_requested or self._cancel_requested,
                timeout=timedelta(seconds=inp.queued_ttl_seconds),
            )
        except TimeoutError:
            self._closing = True
            return await self._finish(
                inp, Outcome("cancelled", error_code="RUN_EXPIRED", error_message="never executed")
            )
        except asyncio.CancelledError:
            self._cancel_requested = True
        if self._cancel_requested:
            self._closing = True
            return await self._finish(inp, Outcome("cancelled"))

        self._set_status("pending", "provisioning the sandbox")
        outcome = await self._supervise(inp)
        self._closing = True
        if self._sandbox is not None:
            self._set_details("destroying the sandbox")
            await workflow.execute_activity_method(
                SandboxActivities.destroy_sandbox,
                DestroyInput(run_id=inp.run_id, sandbox=self._sandbox),
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=_HEARTBEAT,
                retry_policy=_QUICK,
            )
        return await self._finish(inp, outcome)

    async def _supervise(self, inp: RunInput) -> Outcome:
        """Run the agent until it ends, the deadline passes or a cancel arrives.

        ``timeoutSeconds`` is a budget of working time: it is paused while the run waits
        for input (that wait has its own limit, enforced by the agent loop).
        """
        agent = asyncio.create_task(self._agent(inp))
        budget = timedelta(seconds=inp.guardrails.timeout_seconds)
        timed_out = False
        try:
            while True:
                started = workflow.now()
                try:
                    await workflow.wait_condition(
                        lambda: agent.done() or self._cancel_requested or self._waiting,
                        timeout=budget,
                    )
                except TimeoutError:
                    timed_out = True
                    break
                budget -= workflow.now() - started
                if agent.done() or self._cancel_requested:
                    break
                await workflow.wait_condition(
                    lambda: agent.done() or self._cancel_requested or not self._waiting
                )
                if budget <= timedelta(0):
                    timed_out = True
                    break
        except asyncio.CancelledError:  # cancelled through Temporal itself
            self._cancel_requested = True
        if agent.done():
            try:
                return agent.result()
            except (ActivityError, ApplicationError) as err:
                return _error_outcome(err)
        agent.cancel()
        try:
            await agent
        except BaseException:
            pass
        if self._cancel_requested:
            return Outcome("cancelled")
        assert timed_out
        limit = inp.guardrails.timeout_seconds
        return Outcome(
            "failed",
            "timeout",
            guardrail={"guardrail": "timeoutSeconds", "limit": limit, "value": limit},
        )

    async def _agent(self, inp: RunInput) -> Outcome:
        g = inp.guardrails
        self._sandbox = await workflow.execute_activity_method(
            SandboxActivities.provision_sandbox,
            ProvisionInput(run_id=inp.run_id),
            start_to_close_timeout=timedelta(minutes=15),
            heartbeat_timeout=_HEARTBEAT,
            retry_policy=RetryPolicy(maximum_attempts=3),
            summary="provision sandbox",
        )
        self._set_status("running", "sandbox ready")
        turn = 0
        while True:
            if turn >= g.max_turns:
                return Outcome(
                    "failed",
                    "max_turns",
                    guardrail={"guardrail": "maxTurns", "limit": g.max_turns, "value": turn},
                )
            turn += 1
            self._set_details(f"turn {turn}: the model is answering")
            res = await workflow.execute_activity_method(
                AgentActivities.run_agent_turn,
                TurnInput(
                    run_id=inp.run_id, turn=turn, sandbox=self._sandbox, answer=self._take_answer()
                ),
                start_to_close_timeout=timedelta(minutes=15),
                heartbeat_timeout=_HEARTBEAT,
                retry_policy=_MODEL_RETRY,
                summary=f"model turn {turn}",
            )
            self._turns, self._cost = res.turns, res.cost_usd
            if res.cost_usd > g.max_cost_usd:
                return Outcome(
                    "failed",
                    "max_cost",
                    guardrail={
                        "guardrail": "maxCostUsd",
                        "limit": g.max_cost_usd,
                        "value": res.cost_usd,
                    },
                )
            if not res.tool_calls or self._close_requested:
                break
            for call in res.tool_calls:
                if self._close_requested:
                    break
                if call.name == "ask_user":
                    ended = await self._ask(inp, turn, call.id)
                    if ended is not None:
                        return ended
                    continue
                self._set_details(f"turn {turn}: running {call.name}")
                await workflow.execute_activity_method(
                    SandboxActivities.run_tool,
                    ToolInput(
                        run_id=inp.run_id,
                        turn=turn,
                        call_id=call.id,
                        name=call.name,
                        sandbox=self._sandbox,
                        answer=self._take_answer(),
                    ),
                    start_to_close_timeout=timedelta(seconds=inp.tool_timeout_seconds + 60),
                    heartbeat_timeout=_HEARTBEAT,
                    retry_policy=RetryPolicy(maximum_attempts=3),
                    summary=call.name,
                )
            if self._close_requested:
                break
        if (answer := self._take_answer()) is not None:  # no activity came after the answer
            await workflow.execute_activity_method(
                StoreActivities.record_input,
                answer,
                start_to_close_timeout=_STORE_TIMEOUT,
                retry_policy=_QUICK,
            )
        self._set_details("collecting outputs")
        await workflow.execute_activity_method(
            StoreActivities.collect_outputs,
            RunRef(run_id=inp.run_id),
            start_to_close_timeout=_STORE_TIMEOUT,
            retry_policy=_QUICK,
        )
        return Outcome("completed")

    async def _ask(self, inp: RunInput, turn: int, call_id: str) -> Outcome | None:
        """Wait for the answer to an ``ask_user`` call; an Outcome if the run ends instead."""
        # Answers are accepted from the moment the run decides to wait. The store shows
        # waiting_for_input once mark_waiting commits, and an answer sent right then can
        # reach this workflow in the same task as that activity's result; the SDK hands
        # over updates before results, so the validator used to see "running" (a 409).
        early = workflow.patched("input-accepted-while-marking-waiting")
        if early:
            self._answer, self._waiting = None, True
        await workflow.execute_activity_method(
            StoreActivities.mark_waiting,
            WaitInput(run_id=inp.run_id, turn=turn, call_id=call_id),
            start_to_close_timeout=_STORE_TIMEOUT,
            retry_policy=_QUICK,
        )
        if not early:
            self._answer, self._waiting = None, True
        self._set_status("waiting_for_input", f"turn {turn}: waiting for an answer")
        try:
            await workflow.wait_condition(
                lambda: self._answer is not None or self._close_requested,
                timeout=timedelta(seconds=inp.input_wait_seconds),
            )
        except TimeoutError:
            limit = inp.input_wait_seconds
            return Outcome(
                "failed",
                "timeout",
                guardrail={"guardrail": "inputWaitSeconds", "limit": limit, "value": limit},
            )
        finally:
            self._waiting = False
        if self._answer is None:  # closed while waiting: the loop ends with what there is
            return None
        # The next activity stores the answer first (a round trip saved); the status the
        # API shows turns to running then, and the search attribute now.
        self._unrecorded = AnswerInput(
            run_id=inp.run_id, turn=turn, call_id=call_id, content=self._answer
        )
        self._set_status("running", f"turn {turn}: answer received")
        return None

    def _take_answer(self) -> AnswerInput | None:
        answer, self._unrecorded = self._unrecorded, None
        return answer

    async def _finish(self, inp: RunInput, outcome: Outcome) -> FinishResult:
        result = await workflow.execute_activity_method(
            StoreActivities.finish_run,
            FinishInput(
                run_id=inp.run_id,
                status=outcome.status,
                fail_reason=outcome.fail_reason,
                error_code=outcome.error_code,
                error_message=outcome.error_message,
                guardrail=outcome.guardrail,
            ),
            start_to_close_timeout=_STORE_TIMEOUT,
            retry_policy=_QUICK,
        )
        # The store may already say "cancelled" (the API writes it first): that wins.
        self._set_status(result.status, f"ended: {result.status}")
        return result

    # -- Temporal UI ---------------------------------------------------------------

    def _set_status(self, status: str, details: str) -> None:
        if status != self._status:
            workflow.upsert_search_attributes([SA_STATUS.value_set(status)])
        self._status = status
        self._set_details(details)

    def _set_details(self, details: str) -> None:
        workflow.set_current_details(
            f"{self._status} · {details} · turns {self._turns} · ${self._cost:.4f}"
        )
