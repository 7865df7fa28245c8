"""Tool-call approvals in the run workflow: every gated call of a turn is decided before
any call of that turn runs.

``gate`` asks the store which of a turn's calls wait for a person (a local activity,
``gate_tool_calls``: its answer is recorded in the history, so a replay never asks again),
then waits until each is decided through the ``decide`` update (its validator refuses
approvals that do not wait; the decisions are recorded by the ``record_decisions`` local
activity, like ``answer``), the wait's limit passes, the run is closed or cancelled. The
wait pauses the sandbox and, like a question's, does not use ``timeoutSeconds``. A call
that does not run (denied, expired) already has its error result in the store: the loop
skips it. An approved call runs once: its ``run_tool`` stores one result under its key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.approvals import ApprovalActivities
    from runyard.domain import ErrorCode, FailReason, RunStatus
    from workflows import options
    from workflows.approval_payloads import (
        DecideRequest,
        DecideResult,
        ExpireInput,
        GateInput,
        RecordInput,
    )
    from workflows.outcome import Outcome, cause_of
    from workflows.payloads import ToolCallRef


class ApprovalGate:
    def __init__(
        self,
        run_id: str,
        lock: asyncio.Lock,
        *,
        pause: Callable[[], Awaitable[None]],
        resume: Callable[[], Awaitable[None]],
        status: Callable[[RunStatus, str], None],
        closing: Callable[[], bool],
    ) -> None:
        self._run_id, self._lock = run_id, lock
        self._pause, self._resume, self._status, self._closing = pause, resume, status, closing
        self._pending: set[str] = set()  # approval ids that wait for a decision
        self._deciding: set[str] = set()  # claimed by a decide update still recording
        self._round = 0  # the gate's wait this turn; a decide of an older one changes nothing
        self._calls: dict[str, str] = {}  # approval id → tool call id
        self._skip: set[str] = set()  # call ids not to run (denied)

    @property
    def waiting(self) -> bool:
        return bool(self._pending or self._deciding)

    async def gate(self, turn: int, calls: list[ToolCallRef]) -> tuple[set[str], Outcome | None]:
        """Wait until every gated call of ``turn`` is decided. Returns the ids of the calls
        that must not run, and the run's outcome if the wait ended it."""
        if not calls:
            return set(), None
        res = await workflow.execute_local_activity_method(
            ApprovalActivities.gate_tool_calls,
            GateInput(run_id=self._run_id, turn=turn, call_ids=[c.id for c in calls]),
            **options.LIFECYCLE.local(),
        )
        self._skip = set(res.refused)
        if not res.pending:
            return self._skip, None
        self._round += 1
        self._pending = set(res.pending)
        self._calls = dict(zip(res.pending, res.pending_calls, strict=False))
        self._status(RunStatus.WAITING_FOR_INPUT, f"turn {turn}: waiting for approval")
        await self._pause()
        timed_out, left = False, list[str]()
        try:
            try:
                await workflow.wait_condition(
                    lambda: not self.waiting or self._closing(),
                    timeout=timedelta(seconds=res.timeout_seconds),
                )
            except TimeoutError:
                timed_out = True
                await workflow.wait_condition(lambda: not self._deciding)
            left = sorted(self._pending)
            self._pending = set()
            if timed_out and left:
                async with self._lock:
                    await workflow.execute_local_activity_method(
                        ApprovalActivities.expire_approvals,
                        ExpireInput(run_id=self._run_id, approval_ids=left),
                        **options.LIFECYCLE.local(),
                    )
                self._skip |= {self._calls[i] for i in left if i in self._calls}
        finally:
            self._pending = set()
            self._round += 1
        await self._resume()
        if timed_out and left and res.on_timeout == "fail":
            return self._skip, Outcome(
                RunStatus.FAILED,
                FailReason.TIMEOUT,
                ErrorCode.APPROVAL_TIMEOUT,
                f"no one decided {len(left)} tool call(s) within {res.timeout_seconds} s",
            )
        self._status(RunStatus.RUNNING, f"turn {turn}: calls decided")
        return self._skip, None

    def validate(self, req: DecideRequest) -> None:
        if not req.decisions:
            raise ApplicationError("no decisions", type=ErrorCode.VALIDATION_FAILED)
        ids = [d.id for d in req.decisions]
        if len(set(ids)) != len(ids):
            raise ApplicationError("an approval is decided twice", type=ErrorCode.VALIDATION_FAILED)
        late = [i for i in ids if i not in self._pending]
        if late:
            raise ApplicationError(
                f"not waiting for a decision: {', '.join(late)}",
                type=ErrorCode.APPROVAL_NOT_PENDING,
            )

    async def decide(self, req: DecideRequest) -> DecideResult:
        ids = {d.id for d in req.decisions}
        if not ids <= self._pending:  # decided by an update admitted in the same task
            raise ApplicationError("already decided", type=ErrorCode.APPROVAL_ALREADY_DECIDED)
        round_ = self._round
        self._pending -= ids
        self._deciding |= ids
        try:
            async with self._lock:
                result = await workflow.execute_local_activity_method(
                    ApprovalActivities.record_decisions,
                    RecordInput(run_id=self._run_id, request=req),
                    **options.LIFECYCLE.local(),
                )
        except (ActivityError, ApplicationError) as err:
            if round_ == self._round:
                self._pending |= ids  # nothing was written: they still wait
            raise cause_of(err) from None
        finally:
            self._deciding -= ids
        self._skip |= {self._calls[d.id] for d in req.decisions if d.decision == "deny"}
        return DecideResult.model_validate(result)
