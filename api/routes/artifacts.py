"""Artifacts: ``GET /v1/runs/{id}/artifacts``, ``POST /v1/runs/{id}/artifacts/presign``,
and the signed, key-less download of the local store (``/v1/artifact-downloads/…``)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import Field, model_validator
from sqlmodel import col, select

from api.deps import DbDep, KnownQueryOnly, ReaderDep, SettingsDep
from api.errors import ProblemError
from api.ownership import load_owned
from api.pagination import PageDep, paginate
from api.responses import answers, operation_id, problems
from api.responses_runs import ArtifactPage, PresignedUrl
from api.schemas import Body
from runyard.artifacts.save import artifact_object
from runyard.artifacts.signing import DOWNLOAD_PREFIX, verify
from runyard.artifacts.store import LocalArtifactStore, artifact_store
from runyard.db.tables import Artifact, Run
from runyard.secrets import secret_key
from runyard.store.run_view import iso

router = APIRouter(generate_unique_id_function=operation_id, tags=["artifacts"])

DEFAULT_EXPIRY = 15 * 60
MAX_EXPIRY = 7 * 24 * 3600


class PresignBody(Body):
    storage_path: str | None = Field(default=None, min_length=1, max_length=1024)
    artifact_id: str | None = Field(default=None, min_length=1, max_length=64)
    expires_in: int = Field(default=DEFAULT_EXPIRY, ge=1, le=MAX_EXPIRY)

    @model_validator(mode="after")
    def _one_of(self) -> PresignBody:
        if (self.storage_path is None) == (self.artifact_id is None):
            raise ValueError("give exactly one of storagePath and artifactId")
        return self


@router.get(
    "/v1/runs/{run_id}/artifacts",
    summary="The files the run saved",
    dependencies=[KnownQueryOnly],
    **answers(ArtifactPage, 400, 404, keyed=True),
)
async def list_artifacts(
    run_id: str,
    principal: ReaderDep,
    db: DbDep,
    paging: PageDep,
) -> dict[str, Any]:
    await load_owned(db, Run, principal.org_id, run_id, "run")
    return await paginate(
        db,
        Artifact,
        [col(Artifact.run_id) == run_id],
        [col(Artifact.created_at), col(Artifact.id)],
        paging,
        artifact_object,
    )


@router.post(
    "/v1/runs/{run_id}/artifacts/presign",
    summary="A download URL that needs no API key",
    **answers(PresignedUrl, 400, 404, keyed=True),
)
async def presign(
    run_id: str,
    body: PresignBody,
    principal: ReaderDep,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
) -> dict[str, Any]:
    await load_owned(db, Run, principal.org_id, run_id, "run")
    cond = (
        col(Artifact.id) == body.artifact_id
        if body.artifact_id is not None
        else col(Artifact.storage_path) == body.storage_path
    )
    art = await db.read(
        lambda s: _first(s, select(Artifact).where(col(Artifact.run_id) == run_id, cond))
    )
    if art is None:
        raise ProblemError(404, "NOT_FOUND", f"run {run_id} has no such artifact")
    expires = int(time.time()) + body.expires_in
    url = await artifact_store(settings).presign(
        art.storage_path, expires, body.expires_in, str(request.base_url)
    )
    return {"url": url, "expiresAt": iso(datetime.fromtimestamp(expires, UTC))}


def _first(s: Any, stmt: Any) -> Artifact | None:
    row: Artifact | None = s.execute(stmt).scalars().first()
    return row


@router.get(
    DOWNLOAD_PREFIX + "{storage_path:path}",
    summary="Download a presigned artifact",
    response_class=FileResponse,
    responses={
        **problems(400, 403, 404),
        200: {
            "description": "The artifact's bytes, with its content type",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        },
    },
)
async def download(
    storage_path: str,
    settings: SettingsDep,
    db: DbDep,
    expires: Annotated[str, Query(max_length=20)] = "",
    signature: Annotated[str, Query(max_length=128)] = "",
) -> FileResponse:
    store = artifact_store(settings)
    if not isinstance(store, LocalArtifactStore) or not verify(
        secret_key(settings), storage_path, expires, signature
    ):
        raise ProblemError(403, "FORBIDDEN", "the download link is invalid or has expired")
    art = await db.read(
        lambda s: _first(s, select(Artifact).where(col(Artifact.storage_path) == storage_path))
    )
    try:
        path: Path = store.path(storage_path)
    except ValueError as exc:
        raise ProblemError(403, "FORBIDDEN", "the download link is invalid") from exc
    if art is None or not await asyncio.to_thread(path.is_file):
        raise ProblemError(404, "NOT_FOUND", "the artifact is gone")
    return FileResponse(path, media_type=art.content_type, filename=art.name)
