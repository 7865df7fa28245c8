"""``/v1/api-keys``: create (the key is shown once), list, revoke. Scope ``admin``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from fastapi import APIRouter, Request
from pydantic import Field, field_validator
from sqlmodel import col

from api.auth import KeyCache
from api.deps import AdminDep, DbDep, KnownQueryOnly
from api.errors import ProblemError
from api.pagination import PageDep, paginate
from api.responses import AUTHENTICATED, answers, operation_id
from api.responses_org import ApiKey as ApiKeyOut
from api.responses_org import ApiKeyCreated, ApiKeyPage
from api.run_factory import invalid
from api.schemas import Body, Timestamp
from runyard.db.tables import ApiKey
from runyard.db.types import utcnow
from runyard.store.orgs import (
    ALL_SCOPES,
    DelegationRefused,
    create_key,
    delegated_expiry,
    revoke_key,
)

router = APIRouter(
    generate_unique_id_function=operation_id,
    prefix="/v1/api-keys",
    tags=["api keys"],
    responses=AUTHENTICATED,
)
log = structlog.get_logger("runyard.api")
DEFAULT_SCOPES = ["runs:read", "runs:write"]


class CreateKey(Body):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] | None = Field(default=None, min_length=1, max_length=len(ALL_SCOPES))
    expires_at: Timestamp | None = None

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        bad = [s for s in v if s not in ALL_SCOPES]
        if bad:
            raise ValueError(f"unknown scope(s) {', '.join(bad)}; use {', '.join(ALL_SCOPES)}")
        return sorted(set(v), key=ALL_SCOPES.index)


def key_object(key: ApiKey) -> dict[str, Any]:
    def ts(value: datetime | None) -> str | None:
        return value.isoformat().replace("+00:00", "Z") if value else None

    return {
        "id": key.id,
        "object": "api_key",
        "name": key.name,
        "scopes": key.scopes,
        "prefix": key.prefix,
        "createdAt": ts(key.created_at),
        "expiresAt": ts(key.expires_at),
        "lastUsedAt": ts(key.last_used_at),
        "revokedAt": ts(key.revoked_at),
    }


@router.post(
    "",
    status_code=201,
    summary="Create an API key; the answer holds the key, once",
    **answers(ApiKeyCreated, 400),
)
async def create_api_key(body: CreateKey, principal: AdminDep, db: DbDep) -> dict[str, Any]:
    if body.expires_at is not None:
        if body.expires_at <= utcnow():
            raise invalid("expiresAt", "must be in the future", "greater_than")
    scopes = body.scopes or DEFAULT_SCOPES
    try:
        # 403, not 400: the body is valid, but this key may not hand on more than it holds.
        expires_at = delegated_expiry(
            scopes,
            body.expires_at,
            creator_scopes=principal.scopes,
            creator_expires_at=principal.expires_at,
        )
    except DelegationRefused as exc:
        raise ProblemError(403, "FORBIDDEN", str(exc)) from exc
    async with db.write() as s:
        raw, key = await create_key(
            s, principal.org_id, scopes, name=body.name, expires_at=expires_at
        )
    log.info("api_key.created", org_id=principal.org_id, key_id=key.id, scopes=key.scopes)
    out = key_object(key)
    del out["lastUsedAt"], out["revokedAt"]
    return out | {"key": raw}


@router.get(
    "",
    summary="List the organization's live API keys (never the keys themselves)",
    dependencies=[KnownQueryOnly],
    **answers(ApiKeyPage, 400),
)
async def list_api_keys(
    principal: AdminDep,
    db: DbDep,
    paging: PageDep,
) -> dict[str, Any]:
    conds = [col(ApiKey.org_id) == principal.org_id, col(ApiKey.revoked_at).is_(None)]
    order = [col(ApiKey.created_at).desc(), col(ApiKey.id).desc()]
    return await paginate(db, ApiKey, conds, order, paging, key_object)


@router.delete(
    "/{key_id}",
    summary="Revoke an API key (every replica refuses it within 10 s)",
    **answers(ApiKeyOut, 404),
)
async def revoke_api_key(
    key_id: str, request: Request, principal: AdminDep, db: DbDep
) -> dict[str, Any]:
    async with db.write() as s:
        key = await revoke_key(s, key_id, principal.org_id)
    if key is None:
        raise ProblemError(404, "NOT_FOUND", f"no API key {key_id}", title="API key not found")
    cache: KeyCache = request.app.state.key_cache
    cache.forget_key(key_id)
    log.info("api_key.revoked", org_id=principal.org_id, key_id=key_id)
    return key_object(key)
