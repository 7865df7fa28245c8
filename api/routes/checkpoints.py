"""Checkpoints and forks (issue 26): ``GET /v1/runs/{id}/checkpoints``,
``GET /v1/runs/{id}/checkpoints/{turn}/diff`` and ``POST /v1/runs/{id}/fork``."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Path, Query, Response
from pydantic import Field, field_validator
from sqlmodel import col

from api.deps import DbDep, IdempotencyKey, KnownQueryOnly, ReaderDep, SettingsDep, WriterDep
from api.errors import ProblemError
from api.pagination import PageDep, paginate
from api.responses import AUTHENTICATED, answers, operation_id, problems
from api.routes.runs import load_run
from api.run_factory import RunServiceDep
from api.schemas import Body
from runyard.artifacts.store import artifact_store
from runyard.checkpoints.api_model import CheckpointPage
from runyard.checkpoints.store import (
    DIFF_TYPE,
    blob_path,
    boundary_at,
    check_kept,
    checkpoint_object,
    listed,
)
from runyard.checkpoints.tables import RunCheckpoint
from runyard.domain import ErrorCode
from runyard.run_model import RunGroup
from runyard.runs.attempts import MAX_ATTEMPTS, create_group, group_of
from runyard.runs.fork import ForkOptions, plan_fork
from runyard.store.run_view import run_object

router = APIRouter(
    generate_unique_id_function=operation_id,
    prefix="/v1/runs",
    tags=["checkpoints"],
    responses=AUTHENTICATED,
)
log = structlog.get_logger("runyard.api")


class ForkRun(Body):
    turn: int = Field(ge=1, le=100_000)
    restore: Literal["both", "conversation", "code"] = "both"
    prompt: str | None = Field(default=None, min_length=1, max_length=100_000)
    attempts: int = Field(default=1, ge=1, le=MAX_ATTEMPTS)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    start: bool = True
    metadata: dict[str, Any] | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and len(json.dumps(v)) > 16_384:
            raise ValueError("metadata must serialise to at most 16 KiB of JSON")
        return v


@router.get(
    "/{run_id}/checkpoints",
    summary="The run's checkpoints, oldest first",
    dependencies=[KnownQueryOnly],
    **answers(CheckpointPage, 400, 404),
)
async def list_checkpoints(
    run_id: str, principal: ReaderDep, db: DbDep, paging: PageDep
) -> dict[str, Any]:
    await load_run(db, principal.org_id, run_id)
    conds = [col(RunCheckpoint.run_id) == run_id, *listed()]
    order = [col(RunCheckpoint.turn)]
    return await paginate(db, RunCheckpoint, conds, order, paging, checkpoint_object)


@router.get(
    "/{run_id}/checkpoints/{turn}/diff",
    summary="A checkpoint's changes as a git diff (text/x-diff)",
    dependencies=[KnownQueryOnly],
    response_class=Response,
    responses={
        **problems(400, 404, 410, s410="CHECKPOINT_EXPIRED: past its retention"),
        200: {
            "description": "The diff against the previous checkpoint or the base commit",
            "content": {DIFF_TYPE: {"schema": {"type": "string"}}},
        },
    },
)
async def checkpoint_diff(
    run_id: str,
    principal: ReaderDep,
    db: DbDep,
    settings: SettingsDep,
    turn: Annotated[int, Path(ge=1, le=100_000)],
    vs: Annotated[Literal["previous", "base"], Query(description="previous or base")] = "previous",
) -> Response:
    run = await load_run(db, principal.org_id, run_id)
    row = await db.read(lambda s: boundary_at(s, run_id, turn))
    if row is None or not row.changed:
        raise ProblemError(404, ErrorCode.NOT_FOUND, f"{run_id} has no checkpoint at turn {turn}")
    check_kept(row, settings.checkpoint_retention_days)
    path = blob_path(run.org_id, run.id, turn, f"{vs}.diff")
    try:
        data = await artifact_store(settings).get(path, settings.checkpoint_diff_max_bytes)
    except FileNotFoundError as exc:  # removed from the store: as good as expired
        raise ProblemError(
            410, ErrorCode.CHECKPOINT_EXPIRED, f"the diff of turn {turn} is gone"
        ) from exc
    headers = {"X-Runyard-Diff-Truncated": "true"} if row.diff_truncated else {}
    return Response(data, media_type=DIFF_TYPE, headers=headers)


@router.post(
    "/{run_id}/fork",
    status_code=201,
    summary="Fork the run at a turn boundary: its code, its conversation or both",
    **answers(
        RunGroup,
        400,
        402,
        404,
        409,
        410,
        429,
        502,
        s400="VALIDATION_FAILED: a turn out of range",
        s410="CHECKPOINT_EXPIRED: the checkpoint is past its retention",
        s429="also CONCURRENT_RUN_LIMIT_EXCEEDED: the attempts do not all fit (none is made)",
    ),
)
async def fork_run(
    run_id: str,
    body: ForkRun,
    principal: WriterDep,
    db: DbDep,
    settings: SettingsDep,
    runs: RunServiceDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    source = await load_run(db, principal.org_id, run_id)
    if found := await runs.replay(principal.org_id, idempotency_key):
        made, replayed = await group_of(db, found), True
    else:
        opts = ForkOptions(
            turn=body.turn,
            restore=body.restore,
            prompt=body.prompt,
            model=body.model,
            metadata=body.metadata,
            idempotency_key=idempotency_key,
        )
        spec, seed = await plan_fork(db, settings, source, opts)
        made, replayed = await create_group(
            runs, spec, attempts=body.attempts, seed=seed, start=body.start
        )
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    log.info(
        "run.forked",
        run_id=source.id,
        workflow_id=source.id,
        org_id=principal.org_id,
        turn=body.turn,
        forks=[r.id for r in made],
        replayed=replayed,
    )
    return {"data": [run_object(r) for r in made]}
