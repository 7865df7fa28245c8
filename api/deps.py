"""FastAPI dependencies, as ``Annotated`` aliases used by every router."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from temporalio.client import Client

from api.auth import Principal, RateLimiter, authenticate
from runyard.db.engine import Database
from runyard.settings import Settings


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_temporal(request: Request) -> Client:
    client: Client = await request.app.state.temporal()
    return client


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
TemporalDep = Annotated[Client, Depends(get_temporal)]


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
