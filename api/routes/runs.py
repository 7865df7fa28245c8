"""``/v1/runs``: create, list, read. Exec and cancel live in ``run_control``."""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Query, Response
from sqlmodel import col

from api.deps import DbDep, IdempotencyKey, KnownQueryOnly, ReaderDep, WriterDep
from api.errors import ProblemError
from api.ownership import load_owned
from api.pagination import PageDep, paginate
from api.responses import AUTHENTICATED, answers, operation_id
from api.responses_runs import Run as RunOut
from api.responses_runs import RunPage, RunStatusView
from api.run_factory import RunServiceDep
from api.run_groups import create_attempts
from api.schemas import CreateRun, Timestamp
from runyard.db.engine import Database
from runyard.db.tables import Run
from runyard.domain import ErrorCode, RunStatus
from runyard.runs import Created, ThreadSeed
from runyard.store.run_rows import read_run_row
from runyard.store.run_view import run_json, run_object, status_object

router = APIRouter(
    generate_unique_id_function=operation_id,
    prefix="/v1/runs",
    tags=["runs"],
    responses=AUTHENTICATED,
)
log = structlog.get_logger("runyard.api")

STATUSES = tuple(RunStatus)


async def load_run(db: Database, org_id: str, run_id: str) -> Run:
    """The run, or 404 ``RUN_NOT_FOUND`` (also for another organization's run)."""
    return await load_owned(db, Run, org_id, run_id, "run")


async def read_run(db: Database, org_id: str, run_id: str) -> Run:
    """As ``load_run``, read-only and cheaper (a Core row, runyard/store/run_rows.py)."""
    row = await read_run_row(db, org_id, run_id)
    if row is None:
        raise ProblemError(404, "RUN_NOT_FOUND", f"no run {run_id}", title="Run not found")
    return row


@router.post(
    "",
    status_code=201,
    summary="Create a run (queued, or pending with start)",
    operation_id="create_run",
    **answers(
        RunOut,
        400,
        402,
        404,
        409,
        422,
        429,
        502,
        s400="RUN_TEMPLATE_NOT_FOUND, RUN_API_KEY_REQUIRED",
        s404="AGENT_NOT_FOUND, THREAD_NOT_FOUND, REPOSITORY_NOT_FOUND",
        s409="CONFLICT: the thread has an open run",
        s422="callbackUrl or repo",
        s429="also CONCURRENT_RUN_LIMIT_EXCEEDED: the organization's active runs are at the cap "
        "(with attempts: when they do not all fit; none is made)",
    ),
)
async def create(
    body: CreateRun,
    principal: WriterDep,
    runs: RunServiceDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    if body.attempts is not None:  # best-of-N from scratch (issue 26)
        return await create_attempts(body, principal.org_id, runs, response, idempotency_key)
    if found := await runs.replay(principal.org_id, idempotency_key):
        created = Created(found, replayed=True)
    else:
        spec = await runs.resolve(body, principal.org_id, idempotency_key=idempotency_key)
        seed = ThreadSeed(body.thread_id) if body.thread_id is not None else None
        created = await runs.create(spec, seed=seed, start=body.start)
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return run_object(created.run)


@router.get(
    "",
    summary="List runs, newest first",
    dependencies=[KnownQueryOnly],
    **answers(RunPage, 400),
)
async def list_runs(
    principal: ReaderDep,
    db: DbDep,
    paging: PageDep,
    status: Annotated[str | None, Query(max_length=200)] = None,
    thread_id: Annotated[str | None, Query(alias="threadId", max_length=64)] = None,
    agent_id: Annotated[str | None, Query(alias="agentId", max_length=64)] = None,
    template: Annotated[str | None, Query(max_length=64)] = None,
    created_after: Annotated[Timestamp | None, Query(alias="createdAfter")] = None,
    created_before: Annotated[Timestamp | None, Query(alias="createdBefore")] = None,
    schedule_id: Annotated[str | None, Query(alias="scheduleId", max_length=64)] = None,
    group_id: Annotated[str | None, Query(alias="groupId", max_length=64)] = None,
) -> dict[str, Any]:
    conds: list[Any] = [col(Run.org_id) == principal.org_id]
    if status:
        conds.append(col(Run.status).in_(_statuses(status)))
    if thread_id:
        conds.append(col(Run.thread_id) == thread_id)
    if agent_id:
        conds.append(col(Run.agent_id) == agent_id)
    if template:
        conds.append(col(Run.template) == template)
    if created_after:
        conds.append(col(Run.created_at) > created_after)
    if created_before:
        conds.append(col(Run.created_at) < created_before)
    if schedule_id:
        conds.append(col(Run.schedule_id) == schedule_id)
    if group_id:
        conds.append(col(Run.group_id) == group_id)
    order = [col(Run.created_at).desc(), col(Run.id).desc()]
    return await paginate(db, Run, conds, order, paging, run_object)


def _statuses(status: str) -> list[str]:
    """``status=queued,running``: the statuses named, or 400 for one that is none."""
    wanted = [s.strip() for s in status.split(",") if s.strip()]
    bad = [s for s in wanted if s not in STATUSES]
    if bad:
        raise ProblemError(
            400,
            ErrorCode.VALIDATION_FAILED,
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
    return wanted


@router.get("/{run_id}", summary="The run object", **answers(RunOut, 404))
async def get_run(run_id: str, principal: ReaderDep, db: DbDep) -> Response:
    # The hottest read: encoded once, not validated again as the response model.
    row = await read_run(db, principal.org_id, run_id)
    return Response(run_json(row), media_type="application/json")


@router.get(
    "/{run_id}/status",
    summary="A cheap status read, for polling",
    **answers(RunStatusView, 404),
)
async def get_status(run_id: str, principal: ReaderDep, db: DbDep) -> dict[str, Any]:
    return status_object(await read_run(db, principal.org_id, run_id))
