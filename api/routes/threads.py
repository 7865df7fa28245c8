"""``/v1/threads``: conversations that span runs, one open run at a time."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter
from sqlmodel import col

from api.deps import DbDep, KnownQueryOnly, ReaderDep, TemporalDep, WriterDep
from api.errors import ProblemError
from api.orchestrator import TemporalConnector
from api.ownership import load_owned
from api.pagination import PageDep, paginate
from api.responses import AUTHENTICATED, answers, operation_id
from api.responses_org import Thread as ThreadOut
from api.responses_org import ThreadRunCreated, ThreadRuns
from api.run_factory import RunServiceDep, invalid
from api.schemas import CreateThread, CreateThreadRun
from runyard.db.engine import Database
from runyard.db.tables import Run, Thread
from runyard.db.types import utcnow
from runyard.errors import RunNotActive, RunyardError
from runyard.ids import new_id
from runyard.llm.pricing import resolve_model
from runyard.runs import Created, ThreadSeed
from runyard.runs.thread_order import Strategy, ThreadBusy
from runyard.store.run_view import iso, run_object

router = APIRouter(
    generate_unique_id_function=operation_id,
    prefix="/v1/threads",
    tags=["threads"],
    responses=AUTHENTICATED,
)
log = structlog.get_logger("runyard.api")


def thread_object(t: Thread) -> dict[str, Any]:
    return {
        "id": t.id,
        "object": "thread",
        "metadata": t.metadata_ or {},
        "createdAt": iso(t.created_at),
        "updatedAt": iso(t.updated_at),
    }


async def load_thread(db: Database, org_id: str, thread_id: str) -> Thread:
    return await load_owned(db, Thread, org_id, thread_id, "thread")


@router.post("", status_code=201, summary="Create a thread", **answers(ThreadOut, 400))
async def create_thread(body: CreateThread, principal: WriterDep, db: DbDep) -> dict[str, Any]:
    now = utcnow()
    thread = Thread(
        id=new_id("thr"),
        org_id=principal.org_id,
        metadata_=body.metadata,
        created_at=now,
        updated_at=now,
    )
    async with db.write() as s:
        s.add(thread)
    return thread_object(thread)


@router.get("/{thread_id}", summary="A thread", **answers(ThreadOut, 404))
async def get_thread(thread_id: str, principal: ReaderDep, db: DbDep) -> dict[str, Any]:
    return thread_object(await load_thread(db, principal.org_id, thread_id))


@router.post(
    "/{thread_id}/runs",
    status_code=201,
    summary="Create and start a run in the thread",
    **answers(
        ThreadRunCreated,
        400,
        402,
        404,
        409,
        422,
        429,
        502,
        s400="RUN_TEMPLATE_NOT_FOUND, RUN_API_KEY_REQUIRED",
        s404="THREAD_NOT_FOUND, AGENT_NOT_FOUND, REPOSITORY_NOT_FOUND",
        s409="CONFLICT: the thread has an open run (multitaskStrategy reject); activeRunId",
        s422="callbackUrl or repo",
        s429="also CONCURRENT_RUN_LIMIT_EXCEEDED: the organization's active runs are at the cap",
    ),
)
async def create_thread_run(
    thread_id: str,
    body: CreateThreadRun,
    principal: WriterDep,
    db: DbDep,
    runs: RunServiceDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    await load_thread(db, principal.org_id, thread_id)
    if body.thread_id is not None and body.thread_id != thread_id:
        raise invalid("threadId", "must be the thread of the path, or left out")
    if body.route_id is not None:
        # A route names the model of the run; it may not contradict an explicit model.
        if body.model is not None and resolve_model(body.model) != resolve_model(body.route_id):
            raise invalid("routeId", "names a different model than 'model'")
        body.model = body.route_id
    body.thread_id = thread_id
    spec = await runs.resolve(
        body, principal.org_id, route_id=body.route_id, persona_id=body.persona_id
    )
    seed = ThreadSeed(thread_id, Strategy(body.multitask_strategy))
    try:
        created = await runs.create(spec, seed=seed, start=body.start)
    except ThreadBusy as exc:
        raise ProblemError(
            409, exc.code, str(exc), extra={"activeRunId": exc.active_run_id}
        ) from exc
    return await placed(created, temporal)


@router.get(
    "/{thread_id}/runs",
    summary="The thread's runs, newest first",
    dependencies=[KnownQueryOnly],
    **answers(ThreadRuns, 400, 404),
)
async def list_thread_runs(
    thread_id: str,
    principal: ReaderDep,
    db: DbDep,
    paging: PageDep,
) -> dict[str, Any]:
    await load_thread(db, principal.org_id, thread_id)
    conds = [col(Run.org_id) == principal.org_id, col(Run.thread_id) == thread_id]
    order = [col(Run.created_at).desc(), col(Run.id).desc()]
    return await paginate(db, Run, conds, order, paging, run_object)


async def placed(created: Created, temporal: TemporalConnector) -> dict[str, Any]:
    """The create's answer; for ``interrupt``/``rollback``, the runs it supersedes are told
    (each stops at its next turn boundary; the new run starts once they have ended)."""
    run, placement = created.run, created.placement
    out: dict[str, Any] = {"runId": run.id, "traceId": run.trace_id}
    if placement is None or created.replayed or placement.strategy == Strategy.REJECT:
        return out
    out["status"] = run.status
    if placement.waits:
        out["queuedBehind"] = placement.queued_behind
    if placement.supersedes:
        out["supersedes"] = placement.supersedes
        client = await temporal()
        for old in placement.supersedes:
            try:
                await client.supersede(old, run.id)
            except RunNotActive:
                pass  # it ended meanwhile: its ending starts the new run
            except RunyardError as exc:  # the run exists: it starts once the old one ends
                log.warning(
                    "thread.supersede_failed", run_id=old, org_id=run.org_id, error=str(exc)
                )
    log.info(
        "thread.run.placed",
        run_id=run.id,
        workflow_id=run.id,
        org_id=run.org_id,
        strategy=placement.strategy,
        queued_behind=placement.queued_behind,
        supersedes=placement.supersedes,
    )
    return out
