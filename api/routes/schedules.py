"""``/v1/schedules``: scheduled runs on Temporal Schedules (``schedules/``). The store
holds what the client described; Temporal holds the schedule itself, with the same id."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, TypeVar

import structlog
from fastapi import APIRouter, Body, Query, Response
from sqlalchemy import delete, func, select
from sqlmodel import col
from temporalio.client import ScheduleBackfill, ScheduleOverlapPolicy

from api.deps import DbDep, KnownQueryOnly, ReaderDep, SettingsDep, TemporalDep, WriterDep
from api.errors import ProblemError
from api.pagination import PageDep, paginate
from api.responses import AUTHENTICATED, answers, operation_id, problems
from api.run_factory import RunServiceDep
from api.schedule_ops import check_run, load_schedule, push, temporal_call, temporal_client
from api.schedule_schemas import (
    BackfillAccepted,
    BackfillBody,
    CreateSchedule,
    PatchSchedule,
    PauseBody,
    Schedule,
    SchedulePage,
    ScheduleRunBody,
    TriggerAccepted,
)
from api.schedule_trigger import matching_times, trigger_and_wait
from runyard.db.types import utcnow
from runyard.domain import ErrorCode
from runyard.errors import (
    ScheduleLimitExceeded,
    ScheduleNotFound,
    ScheduleSpecInvalid,
)
from runyard.ids import new_id
from runyard.store.run_view import iso
from schedules import spec as specs
from schedules.notify import add_note
from schedules.tables import ScheduleFire, ScheduleRow
from schedules.temporal import latest_note, schedule_of, temporal_paused
from schedules.views import view

router = APIRouter(
    generate_unique_id_function=operation_id,
    prefix="/v1/schedules",
    tags=["schedules"],
    responses=AUTHENTICATED,
)
log = structlog.get_logger("runyard.api")
T = TypeVar("T")
MAX_BACKFILL = 100


@router.post(
    "",
    status_code=201,
    summary="Create a schedule (a Temporal Schedule of the same id)",
    **answers(
        Schedule,
        400,
        402,
        404,
        409,
        422,
        502,
        s400="SCHEDULE_SPEC_INVALID (a bad cron or time zone, an interval under 60 s); "
        "RUN_TEMPLATE_NOT_FOUND and every check of POST /v1/runs on the run body",
        s404="AGENT_NOT_FOUND, THREAD_NOT_FOUND, REPOSITORY_NOT_FOUND",
        s409="SCHEDULE_LIMIT_EXCEEDED: the organization has as many schedules as allowed",
        s422="callbackUrl or repo",
    ),
)
async def create_schedule(
    body: CreateSchedule,
    principal: WriterDep,
    db: DbDep,
    settings: SettingsDep,
    runs: RunServiceDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    org_id = principal.org_id
    specs.check(body.spec)
    thread_id = body.thread_id or body.run.thread_id
    run = await check_run(runs, body.run, thread_id, org_id)
    client = await temporal_client(temporal)
    now = utcnow()
    row = ScheduleRow(
        id=new_id("sch"),
        org_id=org_id,
        name=body.name,
        spec=body.spec.wire(),
        run=run,
        thread_id=thread_id,
        template=body.run.template,
        overlap=body.overlap,
        catchup_window_seconds=body.catchup_window_seconds,
        pause_on_failure=body.pause_on_failure,
        max_runs=body.max_runs,
        enabled=body.enabled,
        metadata_=body.metadata,
        max_active_runs=settings.max_active_runs,
        created_at=now,
        updated_at=now,
    )
    async with db.write() as s:
        count = (
            await s.execute(
                select(func.count())
                .select_from(ScheduleRow)
                .where(col(ScheduleRow.org_id) == org_id)
            )
        ).scalar_one()
        if count >= settings.max_schedules_per_org:
            raise ScheduleLimitExceeded(
                f"the organization has {count} schedules, the most allowed "
                f"(RUNYARD_MAX_SCHEDULES_PER_ORG={settings.max_schedules_per_org})"
            )
        s.add(row)
    try:
        await temporal_call(client.create_schedule(row.id, schedule_of(row, settings.task_queue)))
    except BaseException:
        async with db.write() as s:
            found = await s.get(ScheduleRow, row.id)
            if found is not None:
                await s.delete(found)
        raise
    log.info("schedule.created", schedule_id=row.id, org_id=org_id)
    return await view(db, client, row)


@router.get(
    "", summary="List schedules, newest first", dependencies=[KnownQueryOnly],
    **answers(SchedulePage, 400, 502),
)  # fmt: skip
async def list_schedules(
    principal: ReaderDep,
    db: DbDep,
    temporal: TemporalDep,
    paging: PageDep,
    enabled: bool | None = None,
    thread_id: Annotated[str | None, Query(alias="threadId", max_length=64)] = None,
    template: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    conds: list[Any] = [col(ScheduleRow.org_id) == principal.org_id]
    if enabled is not None:
        conds.append(col(ScheduleRow.enabled).is_(enabled))
    if thread_id:
        conds.append(col(ScheduleRow.thread_id) == thread_id)
    if template:
        conds.append(col(ScheduleRow.template) == template)
    order = [col(ScheduleRow.created_at).desc(), col(ScheduleRow.id).desc()]
    rows: list[ScheduleRow] = []

    def keep(row: ScheduleRow) -> dict[str, Any]:
        rows.append(row)
        return {}

    page = await paginate(db, ScheduleRow, conds, order, paging, keep)
    if rows:  # each with what Temporal says of it
        client = await temporal_client(temporal)
        page["data"] = list(await asyncio.gather(*(view(db, client, r) for r in rows)))
    return page


@router.get("/{schedule_id}", summary="A schedule", **answers(Schedule, 404, 502))
async def get_schedule(
    schedule_id: str, principal: ReaderDep, db: DbDep, temporal: TemporalDep
) -> dict[str, Any]:
    row = await load_schedule(db, principal.org_id, schedule_id)
    return await view(db, await temporal_client(temporal), row)


@router.patch(
    "/{schedule_id}",
    summary="Change a schedule (fires already made keep what they had)",
    **answers(
        Schedule, 400, 404, 422, 502,
        s400="SCHEDULE_SPEC_INVALID; every check of POST /v1/runs on the run body",
    ),
)  # fmt: skip
async def patch_schedule(
    schedule_id: str,
    body: PatchSchedule,
    principal: WriterDep,
    db: DbDep,
    settings: SettingsDep,
    runs: RunServiceDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    row = await load_schedule(db, principal.org_id, schedule_id)
    changes = body.model_fields_set
    for required in ("spec", "run", "overlap", "catchupWindowSeconds", "enabled"):
        name = {"catchupWindowSeconds": "catchup_window_seconds"}.get(required, required)
        if name in changes and getattr(body, name) is None:
            raise ScheduleSpecInvalid("cannot be null", field=required)
    if body.spec is not None:
        specs.check(body.spec)
        row.spec = body.spec.wire()
    thread_id = body.thread_id if "thread_id" in changes else row.thread_id
    if body.run is not None or "thread_id" in changes:
        run = body.run or ScheduleRunBody.model_validate(row.run)
        row.run = await check_run(runs, run, thread_id, row.org_id)
        row.template = run.template
        row.thread_id = thread_id
    for name in ("name", "overlap", "catchup_window_seconds", "pause_on_failure", "enabled"):
        if name in changes and (name == "name" or getattr(body, name) is not None):
            setattr(row, name, getattr(body, name))
    if "metadata" in changes:
        row.metadata_ = body.metadata or {}
    if "max_runs" in changes:
        row.max_runs = body.max_runs
    row.updated_at = utcnow()
    client = await temporal_client(temporal)
    await push(client, row, settings, reset_runs="max_runs" in changes)
    async with db.write() as s:
        await s.merge(row)
    return await view(db, client, row)


@router.delete(
    "/{schedule_id}",
    status_code=204,
    summary="Delete a schedule (its runs in flight go on)",
    response_class=Response,
    responses=problems(404, 502),
)
async def delete_schedule(
    schedule_id: str, principal: WriterDep, db: DbDep, temporal: TemporalDep
) -> Response:
    row = await load_schedule(db, principal.org_id, schedule_id)
    client = await temporal_client(temporal)
    try:
        await temporal_call(client.get_schedule_handle(row.id).delete())
    except ScheduleNotFound:
        pass  # gone from Temporal already: the row goes too
    async with db.write() as s:
        found = await s.get(ScheduleRow, row.id)
        if found is not None:
            await s.delete(found)
        await s.execute(delete(ScheduleFire).where(col(ScheduleFire.schedule_id) == row.id))
    log.info("schedule.deleted", schedule_id=row.id, org_id=row.org_id)
    return Response(status_code=204)


@router.post(
    "/{schedule_id}/pause",
    summary="Pause a schedule, with a note",
    **answers(Schedule, 400, 404, 502),
)
async def pause_schedule(
    schedule_id: str,
    principal: WriterDep,
    db: DbDep,
    temporal: TemporalDep,
    body: Annotated[PauseBody | None, Body()] = None,
) -> dict[str, Any]:
    row = await load_schedule(db, principal.org_id, schedule_id)
    note = (body.note if body else None) or "paused through the API"
    client = await temporal_client(temporal)
    await temporal_call(client.get_schedule_handle(row.id).pause(note=note))
    key = new_id("pause")

    def write(s: Any) -> ScheduleRow:
        fresh = s.get(ScheduleRow, row.id) or row
        add_note(s, fresh, note, paused=True, key=key)
        return fresh

    row = await db.transact(write)
    return await view(db, client, row)


@router.post(
    "/{schedule_id}/unpause",
    summary="Unpause a schedule (a disabled one stays off until enabled)",
    **answers(Schedule, 400, 404, 502),
)
async def unpause_schedule(
    schedule_id: str,
    principal: WriterDep,
    db: DbDep,
    temporal: TemporalDep,
    body: Annotated[PauseBody | None, Body()] = None,
) -> dict[str, Any]:
    row = await load_schedule(db, principal.org_id, schedule_id)
    client = await temporal_client(temporal)
    note = (body.note if body else None) or "unpaused through the API"

    def write(s: Any) -> ScheduleRow:
        fresh = s.get(ScheduleRow, row.id) or row
        fresh.paused = False
        add_note(s, fresh, note, paused=False, key=new_id("unpause"))
        return fresh

    row = await db.transact(write)
    if not temporal_paused(row):
        await temporal_call(client.get_schedule_handle(row.id).unpause(note=latest_note(row)))
    return await view(db, client, row)


@router.post(
    "/{schedule_id}/trigger",
    status_code=202,
    summary="Fire a schedule now",
    **answers(
        TriggerAccepted, 400, 402, 404, 409, 429, 502,
        s409="CONFLICT: the schedule's thread has an open run",
        s429="CONCURRENT_RUN_LIMIT_EXCEEDED: the fire was skipped at the active-run cap",
    ),
)  # fmt: skip
async def trigger_schedule(
    schedule_id: str, principal: WriterDep, db: DbDep, temporal: TemporalDep
) -> dict[str, Any]:
    row = await load_schedule(db, principal.org_id, schedule_id)
    fire: ScheduleFire = await temporal_call(
        trigger_and_wait(db, await temporal_client(temporal), row)
    )
    return {"runId": fire.run_id, "scheduleId": row.id}


@router.post(
    "/{schedule_id}/backfill",
    status_code=202,
    summary="Fire a schedule for each time it would have fired in a window (at most 100)",
    **answers(BackfillAccepted, 400, 404, 502),
)
async def backfill_schedule(
    schedule_id: str, body: BackfillBody, principal: WriterDep, db: DbDep, temporal: TemporalDep
) -> dict[str, Any]:
    row = await load_schedule(db, principal.org_id, schedule_id)
    if body.end_at <= body.start_at:
        raise ProblemError(400, ErrorCode.VALIDATION_FAILED, "endAt must be after startAt")
    client = await temporal_client(temporal)
    times = await temporal_call(matching_times(client, row.id, body.start_at, body.end_at))
    if len(times) > MAX_BACKFILL:
        raise ProblemError(
            400,
            ErrorCode.VALIDATION_FAILED,
            f"the window holds {len(times)} fires; a backfill makes at most {MAX_BACKFILL}",
        )
    if times:
        # One after another: under skip or buffer_one most of a backfill would be dropped.
        fill = ScheduleBackfill(body.start_at, body.end_at, ScheduleOverlapPolicy.BUFFER_ALL)
        await temporal_call(client.get_schedule_handle(row.id).backfill(fill))
    return {"scheduleId": row.id, "fires": len(times), "scheduledTimes": [iso(t) for t in times]}
