"""A pure ASGI middleware: request ids, rate-limit headers, and no bare 500 ever."""

from __future__ import annotations

from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.body_limit import bounded
from api.errors import problem_response
from runyard.ids import new_request_id

log = structlog.get_logger("runyard.api")
_NUL = b"%00"  # in a path or query string: refused like a NUL in a body (api/schemas.py)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 128 else new_request_id()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                for name, value in (state.get("rate_headers") or {}).items():
                    headers.append((name.lower().encode(), str(value).encode()))
                message["headers"] = headers
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            if _NUL in scope.get("raw_path", b"").lower() + scope.get("query_string", b"").lower():
                await problem_response(
                    Request(scope),
                    400,
                    "VALIDATION_FAILED",
                    "the URL contains a NUL character (%00), which is refused",
                    title="Validation failed",
                )(scope, receive, send_wrapper)
                return
            wrong_type = _non_json_body(scope)
            if wrong_type is not None:
                await wrong_type(scope, receive, send_wrapper)
                return
            receive, too_large = await bounded(scope, receive)
            if too_large is not None:
                await too_large(scope, receive, send_wrapper)
                return
            try:
                await self.app(scope, receive, send_wrapper)
            except Exception:
                log.exception("api.unhandled", path=scope.get("path"))
                if started:  # too late for a problem document; the connection is cut
                    raise
                response = problem_response(
                    Request(scope),
                    500,
                    "INTERNAL_ERROR",
                    f"an unexpected error occurred; quote request id {request_id}",
                )
                await response(scope, receive, send_wrapper)


_BODY_METHODS = {"POST", "PUT", "PATCH"}


def _non_json_body(scope: Scope) -> Response | None:
    """A 400 for a request that sends a body in anything but JSON: without this, a JSON
    body sent as ``text/plain`` (curl's ``-d`` sends a form) failed as "Input should be a
    valid dictionary", which sent people looking for a wrong field."""
    if scope.get("method") not in _BODY_METHODS:
        return None
    headers = dict(scope.get("headers") or [])
    length = headers.get(b"content-length", b"").strip()
    if not length.isdigit() and b"transfer-encoding" not in headers:
        return None
    if length.isdigit() and int(length) == 0:
        return None
    raw = headers.get(b"content-type", b"").decode("latin-1")
    media = raw.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return None
    sent = f"'{raw}'" if raw else "no Content-Type"
    return problem_response(
        Request(scope),
        400,
        "VALIDATION_FAILED",
        f"the body must be JSON sent with 'Content-Type: application/json'; got {sent}",
        extra={
            "errors": [
                {
                    "field": "Content-Type",
                    "code": "content_type",
                    "message": f"expected application/json, got {raw or 'none'}",
                }
            ]
        },
    )
