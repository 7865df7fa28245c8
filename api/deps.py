"""FastAPI dependencies, as ``Annotated`` aliases used by every router."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import Principal, authenticate
from api.errors import ProblemError
from api.orchestrator import TemporalConnector
from runyard.db.engine import Database
from runyard.settings import Settings


# Dependencies are coroutines even where they only read app.state: FastAPI runs a plain
# ``def`` dependency in a worker thread, a hop per dependency per request (the profile of
# bench/api.py showed it).
async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_temporal(request: Request) -> TemporalConnector:
    # The connector, not a client: routes connect only once the request is known to be
    # valid, so a bad body is a 400 even while Temporal is down.
    connector: TemporalConnector = request.app.state.temporal
    return connector


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
TemporalDep = Annotated[TemporalConnector, Depends(get_temporal)]


# Declares the scheme in the OpenAPI document (for clients, the docs page and the fuzz
# test); authenticate() reads the header itself so every failure is a problem document.
# A run's connection token (a JWT) is accepted the same way on that run's paths, or as
# ``?token=`` (see docs/accounts.md).
_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="API key",
    description="An API key: `Authorization: Bearer …` (or a run's connection token)",
)


def scoped(scope: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def dep(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        state = request.app.state
        principal = await authenticate(
            request, state.db, state.rate_limiter, state.key_cache, state.secret_key
        )
        principal.require(scope)
        return principal

    return dep


ReaderDep = Annotated[Principal, Depends(scoped("runs:read"))]
WriterDep = Annotated[Principal, Depends(scoped("runs:write"))]
AdminDep = Annotated[Principal, Depends(scoped("admin"))]

# Idempotency-Key (create, input): 1 to 255 characters; an empty key is a 400, not a key.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Retries with the same key get the first answer instead of a new effect.",
    ),
]


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def _known_query_only(request: Request) -> None:
    """400 ``VALIDATION_FAILED`` for a query parameter the route does not take: a typo
    (``?staus=failed``) or a filter that does not exist (``?model=x``) would otherwise be
    ignored, and the caller would read an unfiltered list as the filtered one."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _query_names(dependant)
    # ``token`` is authentication (a run's connection token), not a filter: where a token
    # is not accepted, authentication answers 401, as the contract says.
    unknown = sorted({n for n in request.query_params if n not in known and n != "token"})
    if unknown:
        raise ProblemError(
            400,
            "VALIDATION_FAILED",
            f"unknown query parameter(s) {', '.join(unknown)}; "
            f"this endpoint takes {', '.join(sorted(known)) or 'none'}",
            extra={
                "errors": [
                    {"field": name, "code": "unknown_parameter", "message": "not a parameter"}
                    for name in unknown
                ]
            },
        )


# Add to a list route: ``@router.get("", dependencies=[KnownQueryOnly])``.
KnownQueryOnly = Depends(_known_query_only)
