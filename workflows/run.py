"""RunWorkflow: one agent run, from queued to a terminal status.

::

    queued ──exec──▶ pending ──▶ running ◀──▶ waiting_for_input
       │                │           │
       └──cancel──▶ cancelled ◀─────┴──▶ completed | failed

**This workflow owns the run's status and its lifecycle events.** Nothing else writes
``runs.status``: every change (``run.started``, ``sandbox.ready``, waiting, answered,
the terminal event) is a store write of ``activities/lifecycle.py`` that only this
workflow calls. The API creates the row (``queued``, ``run.created``) and from then on
only asks: exec, cancel, answer and message are updates, whose answer the workflow
gives once the store says so; close is a signal.

The workflow only decides; every side effect (sandbox, model, store) is an activity.
Its Temporal status matches the run's: a completed run's workflow completes, a failed
run's fails with the ``error.code`` (or the ``failReason``) as failure type, and a
cancelled run's is cancelled.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.lifecycle import LifecycleActivities
    from runyard.domain import ErrorCode, RunStatus
    from workflows import options
    from workflows.agent_loop import AgentLoop
    from workflows.approval_payloads import DecideRequest, DecideResult
    from workflows.approvals import ApprovalGate
    from workflows.message_payloads import PostMessageRequest, PostMessageResult
    from workflows.outcome import ContinueAsNew, Outcome, cause_of
    from workflows.payloads import (
        SA_STATUS,
        AnswerInput,
        AnswerRequest,
        AnswerResult,
        CancelRequest,
        CancelResult,
        CloseRequest,
        ExecRequest,
        ExecResult,
        FinishInput,
        FinishResult,
        MessageRequest,
        MessageResult,
        NoteInput,
        RunInput,
        RunRef,
        RunResult,
        ScheduleReplaceRequest,
        StartInput,
        WaitInput,
    )
    from workflows.run_sandbox import RunSandbox
    from workflows.thread_payloads import SupersedeRequest, SupersedeResult
    from workflows.threads import advance


@workflow.defn(name="RunWorkflow")
class RunWorkflow:
    @workflow.init
    def __init__(self, inp: RunInput) -> None:
        self._inp = inp
        carried = inp.carried
        self._status = RunStatus.RUNNING if carried else RunStatus.QUEUED
        self._exec_claimed = carried is not None  # an exec was admitted (or is being)
        self._started = carried is not None  # the store says pending: provisioning may begin
        self._cancel_requested = False
        self._temporal_cancelled = False
        self._question: WaitInput | None = None  # the ask_user call that waits for its answer
        self._answered = False
        self._ended: FinishResult | None = None
        # Store writes of waiting and answering happen in the order the workflow decided them.
        self._lifecycle = asyncio.Lock()
        self._loop = AgentLoop(self, inp)
        # Its sandbox between turns: paused while the run waits, kept and destroyed at its end.
        self._sandbox = RunSandbox(
            inp,
            self._loop,
            self.set_details,
            stopped=lambda: self._cancel_requested or self._loop.superseded_by is not None,
        )
        self._approvals = ApprovalGate(
            inp.run_id,
            self._lifecycle,
            pause=self._sandbox.pause_waiting,
            resume=self._sandbox.resume,
            status=self._set_status,
            # A close, or a newer run of the thread, stops the wait as it stops a question's.
            closing=lambda: self._loop.close_requested or self._loop.superseded_by is not None,
        )
        self._loop.gate = self._approvals.gate

    # -- what the API asks -------------------------------------------------------------

    @workflow.update
    async def exec(self, _: ExecRequest) -> ExecResult:
        """Start a queued run: admitted once, within the organization's active-run cap."""
        self._exec_claimed = True
        try:
            await workflow.execute_local_activity_method(
                LifecycleActivities.start_run,
                StartInput(run_id=self._inp.run_id, max_active_runs=self._inp.max_active_runs),
                **options.LIFECYCLE.local(),
            )
        except (ActivityError, ApplicationError) as err:
            self._exec_claimed = False  # refused (cap, credits): a later exec may succeed
            raise cause_of(err) from None
        self._started = True
        self._set_status(RunStatus.PENDING, "provisioning the sandbox")
        return ExecResult()

    @exec.validator
    def _validate_exec(self, _: ExecRequest) -> None:
        if self._exec_claimed or self._cancel_requested or self._ended is not None:
            raise ApplicationError(f"run is {self._status}", type=ErrorCode.RUN_ALREADY_STARTED)

    @workflow.update
    async def cancel(self, _: CancelRequest) -> CancelResult:
        """Cancel the run. The answer is final: ``cancelled``, or how it had already ended.
        The activity in flight, the sandbox and the model calls stop right after."""
        self._cancel_requested = True
        ended = await self._end(Outcome(RunStatus.CANCELLED))
        return CancelResult(status=ended.status)

    @workflow.update
    async def answer(self, req: AnswerRequest) -> AnswerResult:
        """Answer the question the agent asked with ``ask_user``."""
        await self._answer(req.content)
        return AnswerResult()

    @answer.validator
    def _validate_answer(self, req: AnswerRequest) -> None:
        if self._question is None:
            raise ApplicationError(
                f"run is {self._status}, not waiting for input",
                type=ErrorCode.RUN_NOT_WAITING_FOR_INPUT,
            )

    async def _answer(self, content: str) -> None:
        question, self._question = self._question, None  # a second answer is refused now
        if question is None:  # answered by an update admitted in the same workflow task
            raise ApplicationError("already answered", type=ErrorCode.RUN_NOT_WAITING_FOR_INPUT)
        try:
            async with self._lifecycle:
                await workflow.execute_local_activity_method(
                    LifecycleActivities.record_answer,
                    AnswerInput(
                        run_id=question.run_id,
                        turn=question.turn,
                        call_id=question.call_id,
                        content=content,
                    ),
                    **options.LIFECYCLE.local(),
                )
        except (ActivityError, ApplicationError) as err:
            self._question = question
            raise cause_of(err) from None
        self._answered = True
        self._set_status(RunStatus.RUNNING, f"turn {question.turn}: answer received")

    @workflow.update
    async def message(self, req: MessageRequest) -> MessageResult:
        """A user message: the answer to a waiting question, or read at the next turn."""
        if self._question is not None:
            await self._answer(req.content)
            return MessageResult(delivered="answer")
        update = workflow.current_update_info()
        key = update.id if update is not None else str(workflow.uuid4())
        await workflow.execute_local_activity_method(
            LifecycleActivities.queue_message,
            NoteInput(run_id=self._inp.run_id, content=req.content, key=key),
            **options.LIFECYCLE.local(),
        )
        return MessageResult(delivered="queued")

    @message.validator
    def _validate_message(self, req: MessageRequest) -> None:
        if self._ended is not None or self._cancel_requested:
            raise ApplicationError(f"run is {self._status}", type=ErrorCode.RUN_NOT_ACTIVE)

    @workflow.update
    async def post_message(self, req: PostMessageRequest) -> PostMessageResult:
        """A message to the busy run (``workflows/messages.py``): delivered before the next
        model call (steer) or when the agent would finish (queue); it answers a question
        the run waits on."""
        question = self._question
        if question is not None:
            await self._answer(req.content)
        answered = question.turn if question is not None else None
        return await self._loop.inbox.accept(req, self._loop.turn, answered_turn=answered)

    @post_message.validator
    def _validate_post_message(self, req: PostMessageRequest) -> None:
        if self._ended is not None or self._cancel_requested:
            raise ApplicationError(f"run is {self._status}", type=ErrorCode.RUN_NOT_ACTIVE)
        self._loop.inbox.validate(req, self._loop.turn)

    @workflow.update
    def supersede(self, req: SupersedeRequest) -> SupersedeResult:
        """A newer run of the thread interrupts this one (``workflows/threads.py``): it
        stops at the next turn boundary; a run not started yet ends at once."""
        self._loop.superseded_by = req.by
        if not self._started:
            self._cancel_requested = True
        return SupersedeResult(status=self._status)

    @supersede.validator
    def _validate_supersede(self, req: SupersedeRequest) -> None:
        if self._ended is not None:
            raise ApplicationError(f"run is {self._status}", type=ErrorCode.RUN_NOT_ACTIVE)

    @workflow.update
    async def decide(self, req: DecideRequest) -> DecideResult:
        """Decide tool calls that wait for approval (``workflows/approvals.py``)."""
        return await self._approvals.decide(req)

    @decide.validator
    def _validate_decide(self, req: DecideRequest) -> None:
        self._approvals.validate(req)

    @workflow.signal
    def close(self, _: CloseRequest) -> None:
        """End the run ``completed`` after the current turn."""
        self._loop.close_requested = True

    @workflow.signal
    async def replaced_by_schedule(self, req: ScheduleReplaceRequest) -> None:
        """A newer fire of the run's schedule replaces it (overlap ``cancel_other``): the
        run ends ``cancelled`` with ``error.code: RUN_SUPERSEDED``, as a cancel would."""
        if self._ended is not None:
            return
        self._cancel_requested = True
        await self._end(
            Outcome(
                RunStatus.CANCELLED, error_code=ErrorCode.RUN_SUPERSEDED, error_message=req.reason
            )
        )

    # -- the run -------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: RunInput) -> RunResult:
        try:
            outcome = await self._run(inp)
        except asyncio.CancelledError:  # cancelled through Temporal itself (the UI, the CLI)
            self._cancel_requested = self._temporal_cancelled = True
            outcome = Outcome(RunStatus.CANCELLED)
            await self._sandbox.destroy()
        except ContinueAsNew as more:
            await workflow.wait_condition(workflow.all_handlers_finished)
            if more.carried is not None:  # with the messages accepted meanwhile
                more.carried.messages = list(self._loop.inbox.pending)
            workflow.continue_as_new(inp.model_copy(update={"carried": more.carried}))
        except Exception as err:
            # A bug in this workflow: end the run visibly instead of failing the workflow
            # task, which Temporal would retry forever while the run hangs.
            workflow.logger.exception("run workflow failed")
            await self._sandbox.destroy()
            outcome = Outcome(
                RunStatus.FAILED,
                "error",
                ErrorCode.INTERNAL_ERROR,
                f"{type(err).__name__}: {err}",
            )
        ended = await self._end(outcome)
        if self._sandbox.teardown is not None:
            await self._sandbox.teardown
        await workflow.wait_condition(workflow.all_handlers_finished)
        await advance(self._inp)  # a run of a thread: the next one waiting starts
        return await self._conclude(ended)

    async def _run(self, inp: RunInput) -> Outcome:
        if inp.carried is None:
            self._set_status(RunStatus.QUEUED, "waiting for exec")
            try:
                await workflow.wait_condition(
                    lambda: self._started or self._cancel_requested,
                    timeout=timedelta(seconds=inp.queued_ttl_seconds),
                )
            except TimeoutError:
                if not self._exec_claimed:
                    return Outcome(RunStatus.CANCELLED, error_code=ErrorCode.RUN_EXPIRED)
                await workflow.wait_condition(lambda: self._started or not self._exec_claimed)
            if self._loop.superseded_by is not None and not self._started:
                return await self._loop.superseded()
            if self._cancel_requested or not self._started:
                return Outcome(RunStatus.CANCELLED)
        try:
            return await self._loop.supervise(lambda: self._cancel_requested)
        except asyncio.CancelledError:  # through Temporal: a cancel like any other
            self._cancel_requested = self._temporal_cancelled = True
            if workflow.patched("temporal-cancel-ends-first"):
                # As the cancel update does: the terminal status first, so that the
                # store refuses what a tool call still under way would forward.
                await self._end(Outcome(RunStatus.CANCELLED))
            raise
        finally:
            if not self._loop.continuing:
                # Once the outputs and changes are kept, the terminal write need not wait
                # for the sandbox to go: the destroy runs beside it.
                await self._sandbox.destroy(beside_end=workflow.patched("destroy-beside-end"))

    async def _end(self, outcome: Outcome) -> FinishResult:
        """Write the terminal status once; the first terminal write wins."""
        if self._ended is None:
            result = await workflow.execute_local_activity_method(
                LifecycleActivities.finish_run,
                FinishInput(
                    run_id=self._inp.run_id,
                    status=outcome.status,
                    fail_reason=outcome.fail_reason,
                    error_code=outcome.error_code,
                    error_message=outcome.error_message,
                    guardrail=outcome.guardrail,
                    superseded_by=outcome.superseded_by,
                ),
                **options.LIFECYCLE.local(),
            )
            self._ended = self._ended or result
            self._set_status(RunStatus(self._ended.status), f"ended: {self._ended.status}")
        return self._ended

    async def _conclude(self, ended: FinishResult) -> RunResult:
        """End the workflow the way the run ended."""
        if ended.status == RunStatus.FAILED:
            code = ended.error_code or ended.fail_reason or ErrorCode.INTERNAL_ERROR
            raise ApplicationError(
                ended.error_message or f"the run failed: {ended.fail_reason}",
                type=code,
                non_retryable=True,
            )
        if ended.status == RunStatus.CANCELLED:
            if self._temporal_cancelled:
                raise asyncio.CancelledError()
            # Only a cancellation requested through Temporal ends a workflow as cancelled:
            # the run asks for its own, then waits for it to arrive.
            await workflow.execute_local_activity_method(
                LifecycleActivities.cancel_workflow,
                RunRef(run_id=self._inp.run_id),
                **options.LIFECYCLE.local(),
            )
            await workflow.wait_condition(lambda: False)
        return RunResult(status=ended.status)

    # -- what the agent loop needs from the run --------------------------------------------

    async def ask(self, question: WaitInput, wait_seconds: int) -> bool:
        """Wait for the answer to an ``ask_user`` call; False if it never came."""
        self._answered = False
        self._question = question  # answers are accepted from now on
        async with self._lifecycle:
            await workflow.execute_local_activity_method(
                LifecycleActivities.mark_waiting, question, **options.LIFECYCLE.local()
            )
        self._set_status(RunStatus.WAITING_FOR_INPUT, f"turn {question.turn}: waiting")
        await self._sandbox.pause_waiting()  # until the answer, the wait's end or the close
        try:
            await workflow.wait_condition(
                lambda: (
                    self._answered
                    or self._loop.close_requested
                    or self._loop.superseded_by is not None
                ),
                timeout=timedelta(seconds=wait_seconds),
            )
            answered = True
        except TimeoutError:
            answered = False
        finally:
            self._question = None
        await self._sandbox.resume()
        return answered

    @property
    def waiting(self) -> bool:
        return self._question is not None or self._approvals.waiting

    def set_running(self, details: str) -> None:
        self._set_status(RunStatus.RUNNING, details)

    def set_details(self, details: str) -> None:
        loop = self._loop
        workflow.set_current_details(
            f"{self._status} · {details} · turns {loop.turns} · ${loop.cost:.4f}"
        )

    def _set_status(self, status: RunStatus, details: str) -> None:
        if status != self._status:
            workflow.upsert_search_attributes([SA_STATUS.value_set(status)])
        self._status = status
        self.set_details(details)
