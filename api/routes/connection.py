"""``GET /v1/runs/{id}/connection-token``: a token that opens this one run, for 24 h."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, Request

from api.deps import DbDep, ReaderDep
from api.responses import AUTHENTICATED, answers, operation_id
from api.responses_runs import ConnectionToken
from api.routes.runs import load_run
from api.tokens import issue_token

router = APIRouter(
    generate_unique_id_function=operation_id,
    prefix="/v1/runs",
    tags=["runs"],
    responses=AUTHENTICATED,
)
log = structlog.get_logger("runyard.api")


@router.get(
    "/{run_id}/connection-token",
    summary="A JWT for this run's read, stream and input paths (Bearer or ?token=)",
    **answers(ConnectionToken, 404),
)
async def connection_token(
    run_id: str, request: Request, principal: ReaderDep, db: DbDep
) -> dict[str, Any]:
    run = await load_run(db, principal.org_id, run_id)
    token, expires = issue_token(
        request.app.state.secret_key,
        run_id=run.id,
        org_id=run.org_id,
        key_id=principal.key_id,
        scopes=principal.scopes,
    )
    log.info("run.connection_token", run_id=run.id, org_id=run.org_id, key_id=principal.key_id)
    return {"token": token, "expiresAt": expires.isoformat().replace("+00:00", "Z")}
