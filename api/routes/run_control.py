"""``/v1/runs/{id}/exec``, ``/cancel`` and ``/watch``: exec and cancel are asked of the
run's workflow, which owns the run's status (``workflows/run.py``)."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter
from sqlalchemy.orm import Session

from api.callbacks import allowed_callback
from api.credits import check_credits
from api.deps import DbDep, SettingsDep, TemporalDep, WriterDep
from api.errors import ProblemError
from api.orchestrator import already_started
from api.responses import AUTHENTICATED, answers, operation_id
from api.responses_runs import CancelResult, ExecAccepted, Watcher
from api.routes.runs import load_run
from api.schemas import WatchBody
from runyard.db.tables import RunWatcher
from runyard.db.types import utcnow
from runyard.domain import TERMINAL_STATUSES, ErrorCode, RunStatus
from runyard.errors import RunAlreadyStarted, RunNotActive
from runyard.ids import new_id
from runyard.store.events import locked_run
from runyard.store.run_view import iso

router = APIRouter(
    generate_unique_id_function=operation_id,
    prefix="/v1/runs",
    tags=["runs"],
    responses=AUTHENTICATED,
)
log = structlog.get_logger("runyard.api")


@router.post(
    "/{run_id}/exec",
    status_code=202,
    summary="Start a queued run (one-shot)",
    **answers(
        ExecAccepted,
        402,
        404,
        409,
        429,
        502,
        s409="RUN_ALREADY_STARTED: the run is not queued",
        s429="also CONCURRENT_RUN_LIMIT_EXCEEDED: the organization's active runs are at the cap",
    ),
)
async def exec_run(
    run_id: str, principal: WriterDep, db: DbDep, temporal: TemporalDep
) -> dict[str, Any]:
    run = await load_run(db, principal.org_id, run_id)
    if run.status != RunStatus.QUEUED:
        raise already_started(run)
    await check_credits(db, principal.org_id)
    # The workflow admits one exec, whatever API replica each reached, and only within
    # the organization's active-run cap; it has written `pending` when this returns.
    try:
        await (await temporal()).exec(run_id)
    except (RunAlreadyStarted, RunNotActive) as exc:
        raise already_started(await load_run(db, principal.org_id, run_id)) from exc
    log.info("run.exec", run_id=run_id, workflow_id=run.workflow_id, org_id=principal.org_id)
    return {
        "id": run_id,
        "status": RunStatus.PENDING,
        "workflowId": run.workflow_id,
        "message": "run accepted; the sandbox is being provisioned",
    }


@router.post(
    "/{run_id}/cancel",
    summary="Cancel a run; a terminal run answers its status",
    **answers(CancelResult, 404, 502),
)
async def cancel_run(
    run_id: str, principal: WriterDep, db: DbDep, temporal: TemporalDep
) -> dict[str, Any]:
    run = await load_run(db, principal.org_id, run_id)
    if run.status in TERMINAL_STATUSES:
        return {"id": run_id, "status": run.status}
    try:
        # Answered once the store says how the run ended, so the answer is final; the
        # workflow then stops the activity in flight and destroys the sandbox.
        status: str = (await (await temporal()).cancel(run_id)).status
    except RunNotActive:  # the workflow had already ended: the store says how
        status = (await load_run(db, principal.org_id, run_id)).status
    log.info(
        "run.cancel",
        run_id=run_id,
        workflow_id=run.workflow_id,
        org_id=principal.org_id,
        status=status,
    )
    return {"id": run_id, "status": status}


@router.post(
    "/{run_id}/watch",
    status_code=201,
    summary="Be told (one POST) when the run ends",
    **answers(Watcher, 400, 404, 409, 422, s409="CONFLICT: the run has ended"),
)
async def watch_run(
    run_id: str, body: WatchBody, principal: WriterDep, db: DbDep, settings: SettingsDep
) -> dict[str, Any]:
    await load_run(db, principal.org_id, run_id)
    await allowed_callback(body.callback_url, settings)
    now = utcnow()
    watcher = RunWatcher(
        id=new_id("wch"), run_id=run_id, callback_url=body.callback_url, created_at=now
    )

    def add(s: Session) -> None:
        # Under the run's lock: the terminal event either sees this watcher or came before.
        locked = locked_run(s, run_id)
        if locked.status in TERMINAL_STATUSES:
            raise ProblemError(
                409, ErrorCode.CONFLICT, f"{run_id} has already ended ({locked.status})"
            )
        s.add(watcher)

    await db.transact(add)
    return {
        "id": watcher.id,
        "runId": run_id,
        "callbackUrl": watcher.callback_url,
        "createdAt": iso(now),
    }
