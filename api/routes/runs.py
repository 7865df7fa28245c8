"""``/v1/runs``: create, list, read. Exec and cancel live in ``run_control``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from api.deps import DbDep, ReaderDep, SettingsDep, TemporalDep, WriterDep
from api.errors import ProblemError
from api.orchestrator import start_run_workflow
from api.schemas import CreateRun
from runyard.db.engine import Database
from runyard.db.models import Run, RunEvent
from runyard.db.types import utcnow
from runyard.ids import new_id
from runyard.models.pricing import is_valid_model, needs_anthropic_key
from runyard.repos import repo_exists, repo_url
from runyard.settings import Settings
from runyard.store.events import NewEvent, append_events
from runyard.store.runs import ACTIVE_STATUSES, run_object, status_object
from runyard.store.templates import find_template

router = APIRouter(prefix="/v1/runs", tags=["runs"])
log = structlog.get_logger("runyard.api")

STATUSES = ("queued", "pending", "running", "waiting_for_input", "completed", "failed", "cancelled")


async def load_run(db: Database, org_id: str, run_id: str) -> Run:
    """The run, or 404 ``RUN_NOT_FOUND`` (also for another organization's run)."""
    async with db.session() as s:
        run = await s.get(Run, run_id)
    if run is None or run.org_id != org_id:
        raise ProblemError(404, "RUN_NOT_FOUND", f"no run {run_id}", title="Run not found")
    return run


async def check_active_cap(db: Database, org_id: str, settings: Settings) -> None:
    async with db.session() as s:
        active = (
            await s.execute(
                select(func.count())
                .select_from(Run)
                .where(col(Run.org_id) == org_id, col(Run.status).in_(list(ACTIVE_STATUSES)))
            )
        ).scalar_one()
    if active >= settings.max_active_runs:
        raise ProblemError(
            429,
            "CONCURRENT_RUN_LIMIT_EXCEEDED",
            f"the organization already has {active} active runs (limit {settings.max_active_runs})",
            headers={"Retry-After": "5"},
        )


async def _existing_for_key(db: Database, org_id: str, key: str) -> Run | None:
    async with db.session() as s:
        return (
            (
                await s.execute(
                    select(Run).where(col(Run.org_id) == org_id, col(Run.idempotency_key) == key)
                )
            )
            .scalars()
            .first()
        )


async def _validated(
    body: CreateRun, org_id: str, db: Database, settings: Settings
) -> dict[str, Any]:
    """Everything ``create`` checks against the store and settings; the run's resolved fields."""
    async with db.session() as s:
        template = await find_template(s, org_id, body.template)
    if template is None:
        raise ProblemError(
            400,
            "RUN_TEMPLATE_NOT_FOUND",
            f"no template '{body.template}'",
            title="Template not found",
        )
    if body.agent_id is not None:
        raise ProblemError(404, "AGENT_NOT_FOUND", f"no agent {body.agent_id}")
    if body.thread_id is not None:
        raise ProblemError(404, "THREAD_NOT_FOUND", f"no thread {body.thread_id}")
    defaults = template.defaults or {}
    model = body.model or defaults.get("model") or "sonnet"
    if not is_valid_model(model):
        raise ProblemError(
            400,
            "VALIDATION_FAILED",
            f"unknown model '{model}'",
            extra={
                "errors": [
                    {
                        "field": "model",
                        "message": "use sonnet, opus, haiku, scripted, "
                        "a claude-… model id or anthropic/<id>",
                        "code": "invalid_model",
                    }
                ]
            },
        )
    if needs_anthropic_key(model) and not settings.anthropic_api_key:
        raise ProblemError(
            400,
            "RUN_API_KEY_REQUIRED",
            f"model '{model}' needs ANTHROPIC_API_KEY, which this server does not have; "
            "use model 'scripted' to run without a key",
        )
    timeout = (
        body.timeout_seconds or defaults.get("timeoutSeconds") or settings.default_timeout_seconds
    )
    if timeout < settings.min_timeout_seconds:
        raise ProblemError(
            400,
            "VALIDATION_FAILED",
            f"timeoutSeconds must be at least {settings.min_timeout_seconds}",
            extra={
                "errors": [
                    {
                        "field": "timeoutSeconds",
                        "code": "greater_than_equal",
                        "message": f"must be >= {settings.min_timeout_seconds}",
                    }
                ]
            },
        )
    if body.repo is not None:
        try:
            url = repo_url(body.repo, settings.git_base_url)
        except ValueError as exc:
            raise ProblemError(
                400,
                "VALIDATION_FAILED",
                str(exc),
                extra={"errors": [{"field": "repo", "message": str(exc), "code": "invalid_repo"}]},
            ) from exc
        if not await repo_exists(url):
            raise ProblemError(
                404,
                "REPOSITORY_NOT_FOUND",
                f"repository '{body.repo}' was not found or is not readable",
            )
    return {
        "model": model,
        "guardrails": {
            "maxTurns": body.max_turns or defaults.get("maxTurns") or settings.default_max_turns,
            "maxCostUsd": body.max_cost_usd
            or defaults.get("maxCostUsd")
            or settings.default_max_cost_usd,
            "timeoutSeconds": timeout,
        },
    }


@router.post("", status_code=201, summary="Create a run (queued, or pending with start)")
async def create_run(
    body: CreateRun,
    principal: WriterDep,
    db: DbDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONResponse:
    if idempotency_key and (
        found := await _existing_for_key(db, principal.org_id, idempotency_key)
    ):
        return JSONResponse(
            run_object(found), status_code=201, headers={"Idempotent-Replayed": "true"}
        )
    resolved = await _validated(body, principal.org_id, db, settings)
    if body.start:
        await check_active_cap(db, principal.org_id, settings)
    now = utcnow()
    run_id = new_id("run")
    run = Run(
        id=run_id,
        org_id=principal.org_id,
        status="pending" if body.start else "queued",
        prompt=body.prompt,
        guidance=body.guidance,
        repo=body.repo,
        template=body.template,
        model=resolved["model"],
        guardrails=resolved["guardrails"],
        env=body.env,
        callback_url=body.callback_url,
        metadata_=body.metadata,
        idempotency_key=idempotency_key,
        workflow_id=run_id,
        created_at=now,
        updated_at=now,
        started_at=now if body.start else None,
    )
    events = [NewEvent("created", "run.created", {"status": "queued"})]
    if body.start:
        events.append(NewEvent("started", "run.started", {}))
    try:
        async with db.write() as s:
            s.add(run)
            await s.flush()
            await append_events(s, run, events, now=now)
    except IntegrityError:
        # A concurrent create with the same Idempotency-Key won the race: answer with its run.
        if idempotency_key and (
            found := await _existing_for_key(db, principal.org_id, idempotency_key)
        ):
            return JSONResponse(
                run_object(found), status_code=201, headers={"Idempotent-Replayed": "true"}
            )
        raise
    try:
        await start_run_workflow(await temporal(), run, settings, start=body.start)
    except Exception as exc:
        async with db.write() as s:  # nothing half-made stays behind
            await s.execute(delete(RunEvent).where(col(RunEvent.run_id) == run_id))
            await s.execute(delete(Run).where(col(Run.id) == run_id))
        log.warning("run.start_failed", run_id=run_id, org_id=principal.org_id, error=str(exc))
        raise ProblemError(
            502, "RUN_ORCHESTRATOR_ERROR", f"the workflow engine could not start the run: {exc}"
        ) from exc
    log.info(
        "run.created", run_id=run_id, workflow_id=run_id, org_id=principal.org_id, start=body.start
    )
    return JSONResponse(run_object(run), status_code=201)


@router.get("", summary="List runs, newest first")
async def list_runs(
    principal: ReaderDep,
    db: DbDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    status: Annotated[str | None, Query(max_length=200)] = None,
    thread_id: Annotated[str | None, Query(alias="threadId", max_length=64)] = None,
    agent_id: Annotated[str | None, Query(alias="agentId", max_length=64)] = None,
    template: Annotated[str | None, Query(max_length=64)] = None,
    created_after: Annotated[datetime | None, Query(alias="createdAfter")] = None,
    created_before: Annotated[datetime | None, Query(alias="createdBefore")] = None,
) -> dict[str, Any]:
    conds: list[Any] = [col(Run.org_id) == principal.org_id]
    if status:
        wanted = [s.strip() for s in status.split(",") if s.strip()]
        bad = [s for s in wanted if s not in STATUSES]
        if bad:
            raise ProblemError(
                400,
                "VALIDATION_FAILED",
                f"unknown status {', '.join(bad)}",
                extra={
                    "errors": [
                        {
                            "field": "status",
                            "code": "enum",
                            "message": f"one or more of {', '.join(STATUSES)}",
                        }
                    ]
                },
            )
        conds.append(col(Run.status).in_(wanted))
    if thread_id:
        conds.append(col(Run.thread_id) == thread_id)
    if agent_id:
        conds.append(col(Run.agent_id) == agent_id)
    if template:
        conds.append(col(Run.template) == template)
    for value, name in ((created_after, "createdAfter"), (created_before, "createdBefore")):
        if value is not None and value.tzinfo is None:
            raise ProblemError(
                400,
                "VALIDATION_FAILED",
                f"{name} needs a time zone (for instance a trailing Z)",
                extra={
                    "errors": [
                        {"field": name, "code": "timezone_required", "message": "add a zone"}
                    ]
                },
            )
    if created_after:
        conds.append(col(Run.created_at) > created_after)
    if created_before:
        conds.append(col(Run.created_at) < created_before)
    async with db.session() as s:
        total = (await s.execute(select(func.count()).select_from(Run).where(*conds))).scalar_one()
        rows = (
            await s.execute(
                select(Run)
                .where(*conds)
                .order_by(col(Run.created_at).desc(), col(Run.id).desc())
                .offset((page - 1) * limit)
                .limit(limit)
            )
        ).scalars()
        data = [run_object(r) for r in rows]
    return {
        "data": data,
        "pagination": {
            "page": page,
            "limit": limit,
            "total": total,
            "totalPages": (total + limit - 1) // limit,
        },
    }


@router.get("/{run_id}", summary="The run object")
async def get_run(run_id: str, principal: ReaderDep, db: DbDep) -> dict[str, Any]:
    return run_object(await load_run(db, principal.org_id, run_id))


@router.get("/{run_id}/status", summary="A cheap status read, for polling")
async def get_status(run_id: str, principal: ReaderDep, db: DbDep) -> dict[str, Any]:
    return status_object(await load_run(db, principal.org_id, run_id))
