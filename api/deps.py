"""FastAPI dependencies, as ``Annotated`` aliases used by every router."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request

from api.auth import Principal, RateLimiter, authenticate
from api.orchestrator import TemporalConnector
from runyard.db.engine import Database
from runyard.settings import Settings


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_temporal(request: Request) -> TemporalConnector:
    # The connector, not a client: routes connect only once the request is known to be
    # valid, so a bad body is a 400 even while Temporal is down.
    connector: TemporalConnector = request.app.state.temporal
    return connector


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
TemporalDep = Annotated[TemporalConnector, Depends(get_temporal)]


def scoped(scope: str) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    async def dep(request: Request) -> Principal:
        limiter: RateLimiter = request.app.state.rate_limiter
        principal = await authenticate(request, request.app.state.db, limiter)
        principal.require(scope)
        return principal

    return dep


ReaderDep = Annotated[Principal, Depends(scoped("runs:read"))]
WriterDep = Annotated[Principal, Depends(scoped("runs:write"))]
AdminDep = Annotated[Principal, Depends(scoped("admin"))]
