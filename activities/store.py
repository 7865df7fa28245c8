"""Activities that write a run's results and final status to the store."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._support import logger, store_answer
from runyard.db.engine import Database
from runyard.db.models import Run
from runyard.db.types import utcnow
from runyard.final_outputs import repo_outputs
from runyard.outputs import record_outputs
from runyard.sandbox.base import SandboxProvider
from runyard.settings import Settings, get_settings
from runyard.store.events import NewEvent, append_events, lock_run
from runyard.store.runs import finish, set_status
from runyard.store.transcript import assistant_key, final_text, get_message
from workflows.models import AnswerInput, FinishInput, FinishResult, RunRef, WaitInput


class StoreActivities:
    def __init__(
        self,
        db: Database,
        settings: Settings | None = None,
        providers: dict[str, SandboxProvider] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings or get_settings()
        self.providers = providers or {}

    @activity.defn(name="collect_outputs")
    async def collect_outputs(self, inp: RunRef) -> None:
        """Record what the agent produced: the final text, branches pushed but not yet
        forwarded, and ``changes.patch`` for unpushed work."""
        async with self.db.session() as s:
            text = await final_text(s, inp.run_id)
            current = await s.get(Run, inp.run_id)
        outputs = [{"type": "text", "text": text}] if text else []
        extra, artifacts = (
            await repo_outputs(current, self.settings, self.providers) if current else ([], [])
        )
        async with self.db.write() as s:
            run = await lock_run(s, inp.run_id)
            if run is None:
                raise ApplicationError("run vanished", type="RUN_NOT_FOUND", non_retryable=True)
            run.outputs = outputs + [o for o in run.outputs or [] if o.get("type") != "text"]
            s.add(run)
            await append_events(
                s,
                run,
                [NewEvent(f"output.{i}", "output.detected", o) for i, o in enumerate(outputs)],
            )
            await record_outputs(s, run, extra, "collect", artifacts)

    @activity.defn(name="mark_waiting")
    async def mark_waiting(self, inp: WaitInput) -> None:
        """The agent asked the user something: status waiting_for_input, with the question."""
        async with self.db.session() as s:
            turn = await get_message(s, inp.run_id, assistant_key(inp.turn))
        call = next((b for b in (turn.content if turn else []) if b.get("id") == inp.call_id), {})
        question = str((call.get("input") or {}).get("question", ""))
        async with self.db.write() as s:
            run = await lock_run(s, inp.run_id)
            if run is None:
                raise ApplicationError("run vanished", type="RUN_NOT_FOUND", non_retryable=True)
            if await set_status(
                s,
                run,
                "waiting_for_input",
                allowed_from={"running"},
                now=utcnow(),
                values={"pending_question": question},
            ):
                await append_events(
                    s,
                    run,
                    [
                        NewEvent(
                            f"turn{inp.turn}.ask.{inp.call_id}",
                            "run.waiting_for_input",
                            {"question": question, "toolCallId": inp.call_id},
                        )
                    ],
                )

    @activity.defn(name="record_input")
    async def record_input(self, inp: AnswerInput) -> None:
        """Store an answer that no later activity carried (the run ended right after it)."""
        await store_answer(self.db, inp)

    @activity.defn(name="finish_run")
    async def finish_run(self, inp: FinishInput) -> FinishResult:
        """Write the terminal status and event; the first terminal writer wins."""
        error = None
        if inp.error_code:
            error = {"code": inp.error_code, "message": inp.error_message or inp.error_code}
        async with self.db.write() as s:
            run = await lock_run(s, inp.run_id)
            if run is None:
                raise ApplicationError("run vanished", type="RUN_NOT_FOUND", non_retryable=True)
            if inp.guardrail is not None and run.status not in ("completed", "failed", "cancelled"):
                await append_events(
                    s, run, [NewEvent("guardrail", "guardrail.triggered", dict(inp.guardrail))]
                )
            applied = await finish(
                s, run, inp.status, now=utcnow(), fail_reason=inp.fail_reason, error=error
            )
        logger(inp.run_id).info("run.finished", status=run.status, applied=applied)
        return FinishResult(status=run.status)
