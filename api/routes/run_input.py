"""Humans in the loop: ``/input`` answers a waiting run; ``/command`` speaks JSON-RPC 2.0."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from api.approvals import rpc_decide
from api.auth import Principal
from api.deps import DbDep, IdempotencyKey, TemporalDep, WriterDep
from api.errors import ProblemError
from api.orchestrator import TemporalConnector, not_waiting
from api.responses import AUTHENTICATED, answers, operation_id, problems
from api.responses_runs import InputAccepted, RpcResponse
from api.routes.run_control import cancel_run
from api.routes.runs import load_run
from api.schemas import RunInputBody
from runyard.db.engine import Database
from runyard.db.tables import Run
from runyard.domain import TERMINAL_STATUSES, RunStatus
from runyard.errors import NotWaitingForInput, RunNotActive, RunyardError
from runyard.jsonsafe import json_problem, loads_strict

router = APIRouter(
    generate_unique_id_function=operation_id,
    prefix="/v1/runs",
    tags=["runs"],
    responses=AUTHENTICATED,
)
log = structlog.get_logger("runyard.api")
_MAX_CONTENT = 32 * 1024
_CATCH_UP_SECONDS = 20.0  # longer than a workflow task timeout plus its retry


@router.post(
    "/{run_id}/input",
    summary="Answer a run that waits for input",
    **answers(InputAccepted, 400, 404, 409, 502, s409="RUN_NOT_WAITING_FOR_INPUT"),
)
async def submit_input(
    run_id: str,
    body: RunInputBody,
    principal: WriterDep,
    db: DbDep,
    temporal: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    run = await load_run(db, principal.org_id, run_id)
    if idempotency_key is None and run.status != RunStatus.WAITING_FOR_INPUT:
        raise not_waiting(run, f"it is {run.status}")
    if run.waiting_for == "approval":  # tool calls wait: decide them (/approvals)
        raise not_waiting(run, "it waits for the approval of tool calls, not for an answer")
    runs = await temporal()
    deadline = time.monotonic() + _CATCH_UP_SECONDS
    while True:
        try:
            await runs.answer(run_id, body.content, key=idempotency_key)
            break
        except NotWaitingForInput as exc:
            # The store says waiting as soon as mark_waiting wrote it; a workflow whose
            # worker died in that workflow task asks again only once the task is retried
            # (the workflow task timeout, 10 s). Until then it refuses: ask again while
            # the store still says waiting, and answer 409 once it does not.
            run = await load_run(db, principal.org_id, run_id)
            if run.status != RunStatus.WAITING_FOR_INPUT or time.monotonic() > deadline:
                raise not_waiting(run, str(exc)) from exc
            log.info("run.input.retry", run_id=run_id, org_id=principal.org_id, why=str(exc))
            await asyncio.sleep(0.25)
        except RunNotActive as exc:
            raise not_waiting(run, "the run has ended") from exc
    log.info("run.input", run_id=run_id, workflow_id=run.workflow_id, org_id=principal.org_id)
    return {"ok": True}


# -- JSON-RPC 2.0 --------------------------------------------------------------------


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def _rpc(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse({"jsonrpc": "2.0", **body}, status_code=status)


def _error(rid: Any, err: RpcError) -> JSONResponse:
    error: dict[str, Any] = {"code": err.code, "message": err.message}
    if err.data is not None:
        error["data"] = err.data
    # Malformed requests are the client's fault at the HTTP level too; method and
    # application errors travel in a 200, as JSON-RPC over HTTP does.
    status = 400 if err.code in (-32700, -32600) else 200
    return _rpc({"error": error, "id": rid}, status)


async def _dispatch(
    method: str,
    params: dict[str, Any],
    run: Run,
    principal: Principal,
    db: Database,
    temporal: TemporalConnector,
) -> dict[str, Any]:
    if method == "cancel":
        return await cancel_run(run.id, principal, db, temporal)
    if method in ("approve", "deny"):
        return await rpc_decide(method, params, run, principal, db, temporal)
    if run.status in TERMINAL_STATUSES:
        raise RpcError(-32000, f"the run is {run.status}", {"status": run.status})
    runs = await temporal()
    try:
        if method == "close":
            await runs.close(run.id)
            return {"id": run.id, "status": run.status, "closing": True}
        content = params.get("content")
        if not isinstance(content, str) or not 1 <= len(content.encode()) <= _MAX_CONTENT:
            raise RpcError(-32602, "params.content must be a string of 1 byte to 32 KiB")
        # The workflow decides: the answer to its waiting question, or a note for the
        # agent's next turn.
        delivered = await runs.message(run.id, content)
    except RunNotActive as exc:
        run = await load_run(db, principal.org_id, run.id)
        raise RpcError(-32000, f"the run is {run.status}", {"status": run.status}) from exc
    return {"delivered": delivered.delivered}


@router.post(
    "/{run_id}/command",
    summary="JSON-RPC 2.0: user_message, cancel, close, approve, deny",
    response_model=RpcResponse,
    responses={
        **problems(404),
        200: {"description": "The result, or a JSON-RPC error object (method errors)"},
        204: {"description": "A notification (no id): no response"},
        400: {
            "model": RpcResponse,
            "description": "A JSON-RPC parse error (-32700) or invalid request (-32600)",
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["jsonrpc", "method"],
                        "properties": {
                            "jsonrpc": {"const": "2.0"},
                            "method": {
                                "enum": ["user_message", "cancel", "close", "approve", "deny"]
                            },
                            "params": {"type": "object"},
                            "id": {"type": ["string", "integer", "null"]},
                        },
                    }
                }
            },
        }
    },
)
async def command(
    run_id: str, request: Request, principal: WriterDep, db: DbDep, temporal: TemporalDep
) -> Response:
    run = await load_run(db, principal.org_id, run_id)
    try:
        msg = loads_strict(await request.body())
    except (ValueError, UnicodeDecodeError):  # NaN and Infinity are not JSON either
        return _error(None, RpcError(-32700, "Parse error: the body is not JSON"))
    rid = msg.get("id") if isinstance(msg, dict) else None
    if isinstance(rid, bool) or not isinstance(rid, str | int | None):
        rid = None
    try:
        if not isinstance(msg, dict):
            raise RpcError(-32600, "Invalid Request: send one JSON-RPC request object (no batches)")
        if msg.get("jsonrpc") != "2.0" or not isinstance(msg.get("method"), str):
            raise RpcError(-32600, "Invalid Request: needs jsonrpc '2.0' and a method name")
        if "id" in msg and (
            isinstance(msg["id"], bool) or not isinstance(msg["id"], str | int | None)
        ):
            raise RpcError(-32600, "Invalid Request: id must be a string, an integer or null")
        params = msg.get("params", {})
        if not isinstance(params, dict):
            raise RpcError(-32602, "Invalid params: params must be an object")
        if problem := json_problem(params, depth=1):
            raise RpcError(-32602, f"Invalid params: params {problem}")
        if msg["method"] not in ("user_message", "cancel", "close", "approve", "deny"):
            raise RpcError(-32601, f"Method not found: {msg['method']}")
        result = await _dispatch(msg["method"], params, run, principal, db, temporal)
    except RpcError as err:
        return _error(rid, err)
    except ProblemError as exc:  # e.g. the workflow engine is unreachable
        return _error(rid, RpcError(-32603, exc.detail, {"type": exc.code}))
    except RunyardError as exc:
        return _error(rid, RpcError(-32603, str(exc), {"type": exc.code}))
    if "id" not in msg:
        return Response(status_code=204)  # a notification gets no response
    return _rpc({"result": result, "id": rid})
