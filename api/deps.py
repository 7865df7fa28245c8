"""FastAPI dependencies, as ``Annotated`` aliases used by every router."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

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


# The security scheme of every route that authenticates, in the OpenAPI document (for
# clients, the docs page and the fuzz test). Declared there by ``declare_bearer``, not
# run: authenticate() reads the header itself so every failure is a problem document,
# and FastAPI's HTTPBearer dependency cost each request ~22 µs (bench.api's get-run) for
# nothing. A run's connection token (a JWT) is accepted the same way on that run's
# paths, or as ``?token=`` (see docs/accounts.md).
BEARER = "HTTPBearer"
_BEARER_SCHEME: dict[str, Any] = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "API key",
    "description": "An API key: `Authorization: Bearer …` (or a run's connection token)",
}
_authenticating: set[Callable[..., Any]] = set()


def scoped(scope: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def dep(request: Request) -> Principal:
        state = request.app.state
        principal = await authenticate(
            request, state.db, state.rate_limiter, state.key_cache, state.secret_key
        )
        principal.require(scope)
        return principal

    _authenticating.add(dep)
    return dep


def _authenticates(dependant: Dependant) -> bool:
    return any(d.call in _authenticating or _authenticates(d) for d in dependant.dependencies)


def declare_bearer(app: FastAPI, schema: dict[str, Any]) -> None:
    """Give every operation whose route authenticates (``scoped``) the bearer scheme in
    the OpenAPI document, as a security dependency would have (a step of
    ``install_openapi``)."""
    paths = schema.get("paths", {})
    for route in iter_route_contexts(app.routes):
        original = route.original_route
        if not isinstance(original, APIRoute) or not _authenticates(original.dependant):
            continue
        for method in route.methods or ():
            op = paths.get(route.path_format, {}).get(method.lower())
            if op is not None:
                op.setdefault("security", []).append({BEARER: []})
    schema.setdefault("components", {}).setdefault("securitySchemes", {})[BEARER] = _BEARER_SCHEME


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
