"""The run's lifecycle in the store: every status change and lifecycle event.

Only ``RunWorkflow`` calls these (as local activities: store writes of milliseconds, run
by the worker that runs the workflow task), so the run's status has one owner. Each is
idempotent: a retried write finds its work done (the transition already made, the
event already stored under its key) and does nothing twice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from sqlmodel import col
from temporalio import activity
from temporalio.service import RPCError, RPCStatusCode

from activities._support import logger, typed_failures
from runyard import metrics
from runyard.approvals import store as approval_store
from runyard.db.engine import Database
from runyard.db.tables import Organization, Run, RunMessage
from runyard.db.types import utcnow
from runyard.domain import ACTIVE_STATUSES, RunStatus
from runyard.errors import ConcurrentRunLimitExceeded, RunAlreadyStarted
from runyard.events import data as ev
from runyard.events import keys
from runyard.store.events import append_events, is_postgres, locked_run
from runyard.store.runs import finish, set_status
from runyard.store.transcript import assistant_key, get_message, note_block
from runyard.store.user_messages import drop_pending
from workflows.payloads import (
    AnswerInput,
    FinishInput,
    FinishResult,
    NoteInput,
    ReadyInput,
    ReplaceInput,
    RunRef,
    SandboxInfo,
    StartInput,
    WaitInput,
)


def _lock_org(session: Session, org_id: str) -> None:
    """Serialize the starts of one organization's runs (Postgres; SQLite's writers are
    serialized already by ``BEGIN IMMEDIATE``)."""
    if is_postgres(session):
        session.execute(
            select(col(Organization.id)).where(col(Organization.id) == org_id).with_for_update()
        )


class LifecycleActivities:
    """Each activity is one store transaction (``Database.transact``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @activity.defn(name="start_run")
    @typed_failures
    async def start_run(self, inp: StartInput) -> None:
        """queued → pending with ``run.started``, within the organization's active-run
        cap: the count and the change are one transaction, so of any number of concurrent
        starts exactly as many as the cap allows succeed."""

        def start(s: Session) -> bool:
            run = locked_run(s, inp.run_id)
            if run.status == RunStatus.PENDING:
                return False  # a retry after the commit
            if run.status != RunStatus.QUEUED:
                raise RunAlreadyStarted(f"{run.id} is {run.status}")
            _lock_org(s, run.org_id)
            active = s.execute(
                select(func.count())
                .select_from(Run)
                .where(col(Run.org_id) == run.org_id, col(Run.status).in_(list(ACTIVE_STATUSES)))
            ).scalar_one()
            if active >= inp.max_active_runs:
                raise ConcurrentRunLimitExceeded(
                    f"the organization already has {active} active runs "
                    f"(limit {inp.max_active_runs})"
                )
            set_status(s, run, RunStatus.PENDING, allowed_from={RunStatus.QUEUED}, now=utcnow())
            append_events(s, run, [ev.RunStarted().event(keys.STARTED)])
            return True

        if await self.db.transact(start):
            metrics.run_started()  # after the commit, once

    @activity.defn(name="mark_running")
    @typed_failures
    async def mark_running(self, inp: ReadyInput) -> None:
        """pending → running once the sandbox is ready, with ``sandbox.ready``."""
        info = _sandbox_object(inp.sandbox)

        def ready(s: Session) -> None:
            run = locked_run(s, inp.run_id)
            if set_status(
                s,
                run,
                RunStatus.RUNNING,
                allowed_from={RunStatus.PENDING},
                now=utcnow(),
                values={"sandbox": info},
            ):
                append_events(
                    s, run, [ev.SandboxReady.model_validate(info).event(keys.SANDBOX_READY)]
                )

        await self.db.transact(ready)

    @activity.defn(name="request_stop")
    @typed_failures
    async def request_stop(self, inp: RunRef) -> None:
        """A close or an interrupt arrived while a model turn and its tool calls run on
        the sandbox's host (``activities/cycle.py``): no further call of that turn starts.
        It changes no status and announces nothing; the workflow still decides the end."""
        stop = (
            update(Run)
            .where(col(Run.id) == inp.run_id, col(Run.stop_requested_at).is_(None))
            .values(stop_requested_at=utcnow())
        )
        await self.db.transact(lambda s: s.execute(stop))

    @activity.defn(name="replace_sandbox")
    @typed_failures
    async def replace_sandbox(self, inp: ReplaceInput) -> None:
        """The run's sandbox was lost with its host and rebuilt elsewhere: ``sandbox.lost``,
        then ``sandbox.ready`` for the new one. The status stays ``running``."""
        info = _sandbox_object(inp.sandbox)
        lost = ev.SandboxLost(id=inp.lost.sandbox_id, reason="its host stopped answering")
        gen = inp.sandbox.ref.generation

        def replace(s: Session) -> None:
            run = locked_run(s, inp.run_id)
            run.sandbox = info
            s.add(run)
            events = [
                lost.event(keys.sandbox_lost(gen)),
                ev.SandboxReady.model_validate(info).event(keys.sandbox_rebuilt(gen)),
            ]
            append_events(s, run, events)

        await self.db.transact(replace)

    @activity.defn(name="mark_waiting")
    @typed_failures
    async def mark_waiting(self, inp: WaitInput) -> None:
        """running → waiting_for_input, with the question the agent asked."""

        def wait(s: Session) -> None:
            turn = get_message(s, inp.run_id, assistant_key(inp.turn))
            blocks = turn.content if turn else []
            call = next((b for b in blocks if b.get("id") == inp.call_id), {})
            question = str((call.get("input") or {}).get("question", ""))
            run = locked_run(s, inp.run_id)
            if set_status(
                s,
                run,
                RunStatus.WAITING_FOR_INPUT,
                allowed_from={RunStatus.RUNNING},
                now=utcnow(),
                values={"pending_question": question},
            ):
                data = ev.RunWaitingForInput(question=question, tool_call_id=inp.call_id)
                append_events(s, run, [data.event(keys.asked(inp.turn, inp.call_id))])

        await self.db.transact(wait)

    @activity.defn(name="record_answer")
    @typed_failures
    async def record_answer(self, inp: AnswerInput) -> None:
        """The answer becomes the ``ask_user`` call's result; waiting_for_input → running."""
        key = keys.tool_result(inp.turn, inp.call_id)

        def answer(s: Session) -> None:
            run = locked_run(s, inp.run_id)
            if get_message(s, inp.run_id, key) is not None:
                return
            block = {"type": "tool_result", "tool_use_id": inp.call_id, "content": inp.content}
            s.add(RunMessage(run_id=run.id, key=key, role="tool_result", content=[block]))
            set_status(
                s,
                run,
                RunStatus.RUNNING,
                allowed_from={RunStatus.WAITING_FOR_INPUT},
                now=utcnow(),
                values={"pending_question": None},
            )
            data = ev.RunInputReceived(tool_call_id=inp.call_id, content=inp.content)
            append_events(s, run, [data.event(key)])

        await self.db.transact(answer)

    @activity.defn(name="queue_message")
    @typed_failures
    async def queue_message(self, inp: NoteInput) -> None:
        """A user message the agent reads at its next turn."""
        key = keys.note(inp.key)

        def queue(s: Session) -> None:
            run = locked_run(s, inp.run_id)
            if get_message(s, inp.run_id, key) is not None:
                return
            s.add(
                RunMessage(run_id=run.id, key=key, role="user", content=[note_block(inp.content)])
            )
            data = ev.RunInputReceived(content=inp.content, queued=True)
            append_events(s, run, [data.event(key)])

        await self.db.transact(queue)

    @activity.defn(name="finish_run")
    @typed_failures
    async def finish_run(self, inp: FinishInput) -> FinishResult:
        """Write the terminal status and event; the first terminal write wins, and every
        call answers with the status the run really ended with."""
        error = None
        if inp.error_code:
            error = {"code": inp.error_code, "message": inp.error_message or inp.error_code}
            if inp.superseded_by:
                error["supersededBy"] = inp.superseded_by

        def end(s: Session) -> tuple[Run, bool]:
            run = locked_run(s, inp.run_id)
            if inp.guardrail is not None and not RunStatus(run.status).is_terminal:
                event = ev.GuardrailTriggered.model_validate(dict(inp.guardrail))
                append_events(s, run, [event.event(keys.GUARDRAIL)])
            if not RunStatus(run.status).is_terminal:
                drop_pending(s, run)  # messages the run ended before delivering
            if run.approvals and not RunStatus(run.status).is_terminal:  # never to run now
                approval_store.close(s, run, None, "cancelled", utcnow())
            applied = finish(
                s,
                run,
                RunStatus(inp.status),
                now=utcnow(),
                fail_reason=inp.fail_reason,
                error=error,
            )
            return run, applied

        run, applied = await self.db.transact(end)
        if applied:  # counted once: a retried finish finds the run ended and applies nothing
            metrics.run_ended(run.status, run.fail_reason)
        logger(inp.run_id, org_id=run.org_id).info(
            "run.finished", status=run.status, applied=applied
        )
        return FinishResult.of(run.status, run.fail_reason, run.error)

    @activity.defn(name="cancel_workflow")
    async def cancel_workflow(self, inp: RunRef) -> None:
        """Ask Temporal to cancel the run's own workflow, so that a cancelled run's
        workflow ends cancelled (only a requested cancellation does)."""
        try:
            await activity.client().get_workflow_handle(inp.run_id).cancel()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise


def _sandbox_object(sandbox: SandboxInfo) -> dict[str, Any]:
    """The run object's ``sandbox`` field."""
    return {
        "id": sandbox.ref.sandbox_id,
        "provider": sandbox.ref.provider,
        "size": sandbox.size,
        "resources": sandbox.resources,
    }
