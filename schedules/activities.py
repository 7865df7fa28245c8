"""The activities of a schedule's fire: create its run through the run service
(``runyard.runs``), exec it, and pause the schedule. Built once in the worker with the
store, the settings and the Temporal client."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from pydantic import ValidationError
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.orchestrator import run_input
from api.schemas import CreateRun
from runyard.db.engine import Database
from runyard.db.tables import Run
from runyard.errors import (
    ConcurrentRunLimitExceeded,
    Conflict,
    InsufficientCredits,
    InvalidInput,
    OrchestratorUnavailable,
    RunAlreadyStarted,
    RunyardError,
    TemplateNotFound,
)
from runyard.runs import RunService, ThreadSeed
from runyard.runs.checks import check_credits
from runyard.settings import Settings
from schedules.notify import add_note, record_fire
from schedules.payloads import CreateFire, Made, PauseFire, Started, StartFire
from schedules.tables import ScheduleRow
from workflows.client import RunClient

log = structlog.get_logger("runyard.schedules")

# Why a fire could not start, by the error the run service or the exec gave.
REASONS: dict[type[RunyardError], str] = {
    ConcurrentRunLimitExceeded: "active_run_cap",
    InsufficientCredits: "credits_exhausted",
    TemplateNotFound: "template_deleted",
    Conflict: "thread_busy",
}
# These pause the schedule: every later fire would be skipped the same way.
PAUSING = frozenset({"credits_exhausted", "template_deleted"})


def reason_of(exc: RunyardError) -> str:
    return next((r for cls, r in REASONS.items() if isinstance(exc, cls)), "run_invalid")


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _ChildEngine:
    """``runyard.runs.Engine`` for a fire: the fire workflow starts the run's workflow
    itself, as its child, so ``start`` has nothing to do."""

    def __init__(self, runs: RunClient) -> None:
        self.runs = runs

    async def start(self, run: Run, *, execute: bool) -> None:
        return None

    async def discard(self, run_id: str, reason: str) -> None:
        await self.runs.discard(run_id, reason)


class ScheduleActivities:
    def __init__(self, db: Database, settings: Settings, client: Client) -> None:
        self.db, self.settings = db, settings
        self.runs = RunClient(client, settings.task_queue)
        self.service = RunService(db, settings, _ChildEngine(self.runs))

    async def _schedule(self, schedule_id: str) -> ScheduleRow | None:
        row: ScheduleRow | None = await self.db.read(lambda s: s.get(ScheduleRow, schedule_id))
        return row

    @activity.defn(name="create_scheduled_run")
    async def create_scheduled_run(self, inp: CreateFire) -> Made:
        """The fire's run, queued (idempotent on the schedule and the scheduled time), or
        the skipped fire, recorded and announced."""
        row = await self._schedule(inp.schedule_id)
        if row is None:
            log.warning("schedule.fire_without_schedule", schedule_id=inp.schedule_id)
            return Made(skipped="schedule_deleted")
        try:
            body = CreateRun.model_validate(row.run).model_copy(update={"thread_id": row.thread_id})
            spec = await self.service.resolve(
                body, row.org_id, idempotency_key=f"schedule:{row.id}:{stamp(inp.scheduled_at)}"
            )
            spec = spec.model_copy(
                update={"schedule_id": row.id, "scheduled_at": inp.scheduled_at.astimezone(UTC)}
            )
            await check_credits(self.db, row.org_id)
            seed = ThreadSeed(row.thread_id) if row.thread_id else None
            created = await self.service.create(spec, seed=seed)
        except ValidationError as exc:  # a stored body today's checks refuse
            refused = InvalidInput(str(exc).splitlines()[0], field="run")
            return Made(skipped=await self._skip(row, inp.workflow_id, inp.scheduled_at, refused))
        except OrchestratorUnavailable:
            raise
        except RunyardError as exc:
            return Made(skipped=await self._skip(row, inp.workflow_id, inp.scheduled_at, exc))
        run = created.run
        cap = inp.max_active_runs or row.max_active_runs or self.settings.max_active_runs
        made = run_input(run, self.settings).model_copy(update={"max_active_runs": cap})
        log.info(
            "schedule.run_created",
            schedule_id=row.id,
            run_id=run.id,
            workflow_id=inp.workflow_id,
            org_id=row.org_id,
            replayed=created.replayed,
        )
        return Made(
            run_id=run.id,
            run_input=made,
            summary=f"{row.name or row.id}: {run.prompt}",
            pause_on_failure=row.pause_on_failure,
        )

    @activity.defn(name="start_scheduled_run")
    async def start_scheduled_run(self, inp: StartFire) -> Started:
        """Exec the fire's run (its workflow is the fire's child). Refused (the cap,
        credits): the run goes again and the fire is recorded as skipped."""
        row = await self._schedule(inp.schedule_id)
        try:
            await self.runs.exec(inp.run_id)
        except RunAlreadyStarted:
            pass  # this activity's earlier attempt did it
        except OrchestratorUnavailable:
            raise
        except RunyardError as exc:
            await self.service.discard(inp.run_id)
            if row is None:
                return Started(started=False, skipped=reason_of(exc))
            reason = await self._skip(row, inp.workflow_id, inp.scheduled_at, exc)
            return Started(started=False, skipped=reason)
        if row is not None:
            await self.db.transact(
                lambda s: record_fire(
                    s,
                    row,
                    workflow_id=inp.workflow_id,
                    scheduled_at=inp.scheduled_at,
                    run_id=inp.run_id,
                )
            )
        log.info(
            "schedule.fired",
            schedule_id=inp.schedule_id,
            run_id=inp.run_id,
            workflow_id=inp.workflow_id,
            org_id=row.org_id if row else None,
        )
        return Started(started=True)

    @activity.defn(name="pause_schedule")
    async def pause_schedule(self, inp: PauseFire) -> None:
        row = await self._schedule(inp.schedule_id)
        if row is not None:
            await self._pause(row, inp.note, inp.key)

    async def _skip(
        self, row: ScheduleRow, workflow_id: str, at: datetime, exc: RunyardError
    ) -> str:
        """Record the skipped fire and announce it; for credits or a deleted template the
        schedule is paused first, so whoever sees the skip sees the pause too."""
        reason = reason_of(exc)
        detail = f"{exc.code}: {exc}"
        pause = f"paused: a fire was skipped ({detail})" if reason in PAUSING else None
        if pause:
            await self._pause_temporal(row.id, pause)

        def write(s: Session) -> None:
            fresh = s.get(ScheduleRow, row.id) or row
            record_fire(
                s, fresh, workflow_id=workflow_id, scheduled_at=at, run_id=None,
                reason=reason, detail=detail,
            )  # fmt: skip
            if pause:
                _note_once(s, row.id, pause, f"skip:{workflow_id}")

        await self.db.transact(write)
        log.warning(
            "schedule.skipped",
            schedule_id=row.id,
            workflow_id=workflow_id,
            org_id=row.org_id,
            reason=reason,
            detail=detail,
            paused=bool(pause),
        )
        return reason

    async def _pause(self, row: ScheduleRow, note: str, key: str) -> None:
        """Pause the Temporal schedule and the store's, with a note; ``schedule.paused``."""
        await self._pause_temporal(row.id, note)
        await self.db.transact(lambda s: _note_once(s, row.id, note, key))
        log.warning("schedule.paused", schedule_id=row.id, org_id=row.org_id, note=note)

    async def _pause_temporal(self, schedule_id: str, note: str) -> None:
        try:
            await self.runs.temporal.get_schedule_handle(schedule_id).pause(note=note[:1000])
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:  # deleted meanwhile: nothing to pause
                raise


def _note_once(s: Session, schedule_id: str, note: str, key: str) -> None:
    """Pause the stored schedule with ``note`` (and announce it), once per ``key``."""
    fresh = s.get(ScheduleRow, schedule_id)
    if fresh is not None and not any(n.get("key") == key for n in fresh.notes or []):
        add_note(s, fresh, note, paused=True, key=key)
