"""LangGraph Platform routes (``RUNYARD_LANGGRAPH_COMPAT=on``), mounted at ``/lg``:
the official ``langgraph-sdk`` client and agent-chat-ui work against Runyard with only
the URL and the key changed. See docs/langgraph.md.

A FastAPI application of its own, mounted in the API's: it shares the API's state
(store, Temporal, event hub, limits), answers problem documents as the API does, but
with LangGraph's statuses (a bad body: 422; what is not served: 501), and allows the
browser origins of ``RUNYARD_LANGGRAPH_CORS_ORIGINS`` (exact matches) on ``/lg`` only.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware

from api.deps import KnownQueryOnly
from api.errors import ProblemError, install_error_handlers, problem_response
from api.langgraph import assistants, runs, threads
from api.langgraph.deps import lg_scoped
from runyard.domain import ErrorCode
from runyard.errors import NotServed, RunyardError
from runyard.settings import Settings

PREFIX = "/lg"


def _catch_all() -> APIRouter:
    """Every other LangGraph route (crons, store, assistants' writes, …): 501."""
    router = APIRouter()

    @router.api_route(
        "/{path:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        dependencies=[Depends(lg_scoped("runs:read"))],
    )
    async def not_served(path: str, request: Request) -> None:
        raise NotServed(f"{request.method} /{path} is not served by Runyard's LangGraph routes")

    return router


def _install_errors(app: FastAPI) -> None:
    install_error_handlers(app)

    def as_lg(request: Request, p: ProblemError) -> JSONResponse:
        status = 422 if p.code == ErrorCode.VALIDATION_FAILED else p.status
        return problem_response(
            request, status, p.code, p.detail, title=p.title, headers=p.headers, extra=p.extra
        )

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return as_lg(request, exc)

    @app.exception_handler(RunyardError)
    async def _runyard(request: Request, exc: RunyardError) -> JSONResponse:
        return as_lg(request, ProblemError.of(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ())[1:]) or "body",
                "message": e.get("msg", "invalid"),
                "code": e.get("type", "invalid"),
            }
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem_response(
            request, 422, ErrorCode.VALIDATION_FAILED, detail, extra={"errors": errors}
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = getattr(request.state, "request_id", None)
        return problem_response(
            request, 500, ErrorCode.INTERNAL_ERROR, f"an unexpected error occurred; quote {rid}"
        )


class _Cors(CORSMiddleware):
    """Starlette's CORS, whose refused preflight is a problem document too."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        detail = bytes(response.body).decode() or "CORS preflight refused"
        return problem_response(None, 400, ErrorCode.BAD_REQUEST, detail, path=PREFIX)


def mount(app: FastAPI, settings: Settings) -> None:
    """Mount the LangGraph routes at /lg when the setting is on."""
    if not settings.langgraph_compat:
        return
    # A query parameter a route does not take is refused (422), never ignored.
    lg = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, dependencies=[KnownQueryOnly])
    lg.state = app.state  # the API's store, Temporal, event hub and limits
    _install_errors(lg)
    origins = [o.strip() for o in settings.langgraph_cors_origins.split(",") if o.strip()]
    if origins:
        lg.add_middleware(
            _Cors,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["x-api-key", "content-type", "last-event-id", "authorization", "prefer"],
            expose_headers=["content-location", "location", "x-pagination-next",
                            "x-pagination-total", "x-request-id"],
            max_age=600,
        )  # fmt: skip
    for router in (assistants.router, threads.router, runs.router, _catch_all()):
        lg.include_router(router)
    app.mount(PREFIX, lg)
