"""RFC 9457 problem details for every error, FastAPI's own validation errors included."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from runyard.domain import ErrorCode
from runyard.errors import RunyardError

PROBLEM_JSON = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    402: "Payment required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    410: "Gone",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable",
    429: "Too many requests",
    500: "Internal error",
    502: "Bad gateway",
    503: "Service unavailable",
    501: "Not implemented",
}
_CODES = {
    400: "BAD_REQUEST",
    401: "AUTH_UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "BAD_REQUEST",
    406: "BAD_REQUEST",
    409: "CONFLICT",
    413: "BAD_REQUEST",
    415: "BAD_REQUEST",
    429: "RATE_LIMIT_EXCEEDED",
    500: "INTERNAL_ERROR",
}


# The HTTP status of each Runyard error that reaches a request (see runyard/errors.py).
_STATUS_BY_CODE: dict[str, int] = {
    ErrorCode.RUN_NOT_FOUND: 404,
    ErrorCode.RUN_ALREADY_STARTED: 409,
    ErrorCode.RUN_NOT_WAITING_FOR_INPUT: 409,
    ErrorCode.RUN_NOT_ACTIVE: 409,
    ErrorCode.CONCURRENT_RUN_LIMIT_EXCEEDED: 429,
    ErrorCode.USAGE_INSUFFICIENT_CREDITS: 402,
    ErrorCode.RUN_TEMPLATE_NOT_FOUND: 400,
    ErrorCode.RUN_API_KEY_REQUIRED: 400,
    ErrorCode.RUN_ORCHESTRATOR_ERROR: 502,
    ErrorCode.SANDBOX_UNAVAILABLE: 503,
    # A refused create (runyard.runs).
    ErrorCode.VALIDATION_FAILED: 400,
    ErrorCode.CALLBACK_URL_FORBIDDEN: 422,
    ErrorCode.AGENT_NOT_FOUND: 404,
    ErrorCode.THREAD_NOT_FOUND: 404,
    ErrorCode.REPOSITORY_NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.NOT_IMPLEMENTED: 501,
    ErrorCode.MESSAGE_NOT_FOUND: 404,
    ErrorCode.MESSAGE_ALREADY_DELIVERED: 409,
    ErrorCode.RUN_TURN_MISMATCH: 409,
    ErrorCode.SCHEDULE_SPEC_INVALID: 400,
    ErrorCode.SCHEDULE_NOT_FOUND: 404,
    ErrorCode.SCHEDULE_LIMIT_EXCEEDED: 409,
    ErrorCode.CHECKPOINT_EXPIRED: 410,
    ErrorCode.APPROVAL_NOT_FOUND: 404,
    ErrorCode.APPROVAL_ALREADY_DECIDED: 409,
    ErrorCode.APPROVAL_NOT_PENDING: 409,
}
# A title in plain English for each machine code (RFC 9457: the same for every occurrence).
TITLES_BY_CODE: dict[str, str] = {
    "AUTH_UNAUTHORIZED": "Authentication required",
    "API_KEY_INVALID": "Invalid API key",
    "FORBIDDEN": "Forbidden",
    "NOT_FOUND": "Not found",
    "RUN_NOT_FOUND": "Run not found",
    "TEMPLATE_NOT_FOUND": "Template not found",
    "WEBHOOK_NOT_FOUND": "Webhook not found",
    "REPOSITORY_NOT_FOUND": "Repository not found",
    "AGENT_NOT_FOUND": "Agent not found",
    "THREAD_NOT_FOUND": "Thread not found",
    "VALIDATION_FAILED": "Validation failed",
    "BAD_REQUEST": "Bad request",
    "RUN_TEMPLATE_NOT_FOUND": "Template not found",
    "RUN_API_KEY_REQUIRED": "Model provider key not configured",
    "RUN_ALREADY_STARTED": "Run already started",
    "RUN_NOT_WAITING_FOR_INPUT": "Run not waiting for input",
    "RUN_NOT_ACTIVE": "Run has ended",
    "TEMPLATE_SLUG_EXISTS": "Template slug already exists",
    "WEBHOOK_URL_DUPLICATE": "Webhook URL already registered",
    "TEMPLATE_HAS_RUNNING_SANDBOXES": "Template has running sandboxes",
    "WEBHOOK_LIMIT_EXCEEDED": "Too many webhooks",
    "CONFLICT": "Conflict",
    "TEMPLATE_SYSTEM_READONLY": "System template is read-only",
    "USAGE_INSUFFICIENT_CREDITS": "Insufficient credits",
    "RATE_LIMIT_EXCEEDED": "Rate limit exceeded",
    "CONCURRENT_RUN_LIMIT_EXCEEDED": "Too many active runs",
    "CALLBACK_URL_FORBIDDEN": "Callback URL forbidden",
    "EVENTS_EXPIRED": "Events expired",
    "RUN_ORCHESTRATOR_ERROR": "Workflow engine unreachable",
    "SANDBOX_UNAVAILABLE": "Sandbox unavailable",
    "INTERNAL_ERROR": "Internal error",
    "NOT_IMPLEMENTED": "Not implemented",
    "MESSAGE_NOT_FOUND": "Message not found",
    "MESSAGE_ALREADY_DELIVERED": "Message already delivered",
    "RUN_TURN_MISMATCH": "Run turn mismatch",
    "SCHEDULE_SPEC_INVALID": "Invalid schedule spec",
    "SCHEDULE_NOT_FOUND": "Schedule not found",
    "SCHEDULE_LIMIT_EXCEEDED": "Too many schedules",
    "CHECKPOINT_EXPIRED": "Checkpoint expired",
    "APPROVAL_NOT_FOUND": "Approval not found",
    "APPROVAL_ALREADY_DECIDED": "Approval already decided",
    "APPROVAL_NOT_PENDING": "Approval no longer pending",
    "APPROVAL_TIMEOUT": "Approval timed out",
}


def title_of(code: str, status: int) -> str:
    """The title of a code; a code without one gets its status's (never the code itself
    re-cased: "Run api key required" said nothing)."""
    return TITLES_BY_CODE.get(code) or _TITLES.get(status, "Error")


_HEADERS_BY_CODE: dict[str, dict[str, str]] = {
    ErrorCode.CONCURRENT_RUN_LIMIT_EXCEEDED: {"Retry-After": "5"},
}


class ProblemError(Exception):
    """Raise from anywhere in a request to answer with a problem+json."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.title = title or title_of(code, status)
        self.headers = headers or {}
        self.extra = extra or {}

    @classmethod
    def of(cls, exc: RunyardError, detail: str | None = None) -> ProblemError:
        """The problem document of a Runyard error (an update the workflow refused …)."""
        status = _STATUS_BY_CODE.get(exc.code, 500)
        return cls(
            status,
            exc.code,
            detail or str(exc) or exc.code,
            headers=_HEADERS_BY_CODE.get(exc.code),
            extra={"errors": exc.field_errors} if exc.field_errors else None,
        )


def problem_response(
    request: Request | None,
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    path: str | None = None,
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    if status == 401:  # RFC 9110: a 401 names the scheme that would be accepted
        headers = {"WWW-Authenticate": _www_authenticate(code), **(headers or {})}
    body: dict[str, Any] = {
        "type": code,
        "title": title or title_of(code, status),
        "status": status,
        "detail": detail,
        "instance": path if path is not None else (request.url.path if request else None),
        "requestId": request_id,
        **(extra or {}),
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _www_authenticate(code: str) -> str:
    if code == "API_KEY_INVALID":  # RFC 6750 section 3.1
        return 'Bearer realm="runyard", error="invalid_token"'
    return 'Bearer realm="runyard"'


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            request,
            exc.status,
            exc.code,
            exc.detail,
            title=exc.title,
            headers=exc.headers,
            extra=exc.extra,
        )

    @app.exception_handler(RunyardError)
    async def _runyard(request: Request, exc: RunyardError) -> JSONResponse:
        p = ProblemError.of(exc)
        return problem_response(
            request, p.status, p.code, p.detail, title=p.title, headers=p.headers, extra=p.extra
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = err.get("loc", ())
            code = err.get("type", "invalid")
            message = err.get("msg", "invalid")
            field = _field(loc)
            if code == "json_invalid":
                # loc is ("body", <byte offset>): the offset is no field.
                reason = err.get("ctx", {}).get("error", message)
                at = f" at byte {loc[1]}" if len(loc) > 1 else ""
                field, message = "body", f"the body is not valid JSON: {reason}{at}"
            elif code == "missing" and tuple(loc) == ("body",):
                message = "a JSON body is required (Content-Type: application/json)"
            errors.append({"field": field, "message": message, "code": code})
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem_response(
            request,
            400,
            "VALIDATION_FAILED",
            detail or "invalid request",
            title="Validation failed",
            extra={"errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(
            exc.status_code, "BAD_REQUEST" if exc.status_code < 500 else "INTERNAL_ERROR"
        )
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route for {request.method} {request.url.path}"
        return problem_response(
            request,
            exc.status_code,
            code,
            detail,
            title=_TITLES.get(exc.status_code),
            headers=dict(exc.headers or {}),
        )
