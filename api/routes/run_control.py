"""``/v1/runs/{id}/exec`` and ``/cancel``: the run's state changes through its workflow."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.callbacks import allowed_callback
from api.deps import DbDep, SettingsDep, TemporalDep, WriterDep
from api.errors import ProblemError
from api.orchestrator import already_started, send_exec, signal_cancel
from api.routes.runs import load_run
from api.run_factory import check_active_cap
from api.schemas import WatchBody
from runyard.db.models import RunWatcher
from runyard.db.types import utcnow
from runyard.ids import new_id
from runyard.store.events import TERMINAL_STATUSES, NewEvent, append_events, lock_run
from runyard.store.runs import finish, iso, set_status

router = APIRouter(prefix="/v1/runs", tags=["runs"])
log = structlog.get_logger("runyard.api")


@router.post("/{run_id}/exec", status_code=202, summary="Start a queued run (one-shot)")
async def exec_run(
    run_id: str, principal: WriterDep, db: DbDep, settings: SettingsDep, temporal: TemporalDep
) -> JSONResponse:
    run = await load_run(db, principal.org_id, run_id)
    if run.status != "queued":
        raise already_started(run)
    await check_active_cap(db, principal.org_id, settings)

    async def still_queued() -> bool:
        return (await load_run(db, principal.org_id, run_id)).status == "queued"

    # The workflow's update validator is the single arbiter: of two concurrent execs,
    # exactly one is admitted, whatever API replica each reached.
    await send_exec(await temporal(), run, is_still_queued=still_queued)
    async with db.write() as s:
        locked = await lock_run(s, run_id)
        assert locked is not None
        if await set_status(s, locked, "pending", allowed_from={"queued"}, now=utcnow()):
            await append_events(s, locked, [NewEvent("started", "run.started", {})])
    log.info("run.exec", run_id=run_id, workflow_id=run.workflow_id, org_id=principal.org_id)
    return JSONResponse(
        {
            "id": run_id,
            "status": "pending",
            "workflowId": run.workflow_id,
            "message": "run accepted; the sandbox is being provisioned",
        },
        status_code=202,
    )


@router.post("/{run_id}/cancel", summary="Cancel a run; a terminal run answers its status")
async def cancel_run(
    run_id: str, principal: WriterDep, db: DbDep, temporal: TemporalDep
) -> dict[str, Any]:
    run = await load_run(db, principal.org_id, run_id)
    if run.status in TERMINAL_STATUSES:
        return {"id": run_id, "status": run.status}
    async with db.write() as s:
        locked = await lock_run(s, run_id)
        assert locked is not None
        await finish(s, locked, "cancelled", now=utcnow())
        status = locked.status
    if status == "cancelled":
        # The store says cancelled first (so the answer is final); the workflow then stops
        # the activity in flight, destroys the sandbox and records the final usage.
        await signal_cancel(temporal, run, reason="cancelled through the API")
        log.info(
            "run.cancelled", run_id=run_id, workflow_id=run.workflow_id, org_id=principal.org_id
        )
    return {"id": run_id, "status": status}


@router.post("/{run_id}/watch", status_code=201, summary="Be told (one POST) when the run ends")
async def watch_run(
    run_id: str, body: WatchBody, principal: WriterDep, db: DbDep, settings: SettingsDep
) -> dict[str, Any]:
    await load_run(db, principal.org_id, run_id)
    await allowed_callback(body.callback_url, settings)
    now = utcnow()
    watcher = RunWatcher(
        id=new_id("wch"), run_id=run_id, callback_url=body.callback_url, created_at=now
    )
    async with db.write() as s:
        # Under the run's lock: the terminal event either sees this watcher or came before.
        locked = await lock_run(s, run_id)
        assert locked is not None
        if locked.status in TERMINAL_STATUSES:
            raise ProblemError(409, "CONFLICT", f"{run_id} has already ended ({locked.status})")
        s.add(watcher)
    return {
        "id": watcher.id,
        "runId": run_id,
        "callbackUrl": watcher.callback_url,
        "createdAt": iso(now),
    }
