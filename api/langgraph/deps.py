"""Authentication on ``/lg``: the SDK's ``X-Api-Key`` header (or ``Authorization:
Bearer``) holding a Runyard API key; and reading a request's JSON body."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request

from api.auth import Principal, authenticate, authenticate_api_key
from api.errors import ProblemError
from api.langgraph.hooks import Baseline
from api.langgraph.served import extensions
from runyard.domain import ErrorCode


def lg_scoped(scope: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def dep(request: Request) -> Principal:
        state = request.app.state
        raw = request.headers.get("x-api-key", "").strip()
        if raw:
            principal = await authenticate_api_key(
                request, state.db, state.rate_limiter, state.key_cache, raw
            )
        elif request.headers.get("authorization"):
            principal = await authenticate(
                request, state.db, state.rate_limiter, state.key_cache, state.secret_key
            )
        else:
            raise ProblemError(
                401, ErrorCode.AUTH_UNAUTHORIZED, "send the API key as 'X-Api-Key: <api key>'"
            )
        principal.require(scope)
        return principal

    return dep


LgReader = Annotated[Principal, Depends(lg_scoped("runs:read"))]
LgWriter = Annotated[Principal, Depends(lg_scoped("runs:write"))]
ExtDep = Annotated[Baseline, Depends(extensions)]
