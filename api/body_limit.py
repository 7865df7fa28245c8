"""The most bytes a request body may hold (413 ``PAYLOAD_TOO_LARGE`` beyond).

Every body the API takes is small (a prompt is at most 100,000 characters, the codec
server's bodies 4 MiB): without a bound, a client could make a process read and parse a
body of any size. A body announced by ``Content-Length`` is refused before it is read; a
chunked one is read up to the bound first, then handed on.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope

from api.errors import problem_response

MAX_REQUEST_BYTES = 8 * 1024 * 1024


def _too_large(scope: Scope) -> Response:
    return problem_response(
        Request(scope),
        413,
        "PAYLOAD_TOO_LARGE",
        f"the body is over {MAX_REQUEST_BYTES // 2**20} MiB",
        title="Payload too large",
    )


async def bounded(scope: Scope, receive: Receive) -> tuple[Receive, Response | None]:
    """The ``receive`` to hand on, and the 413 to answer instead, if the body is too big."""
    headers = dict(scope.get("headers") or [])
    length = headers.get(b"content-length", b"").strip()
    if length.isdigit():
        return receive, (_too_large(scope) if int(length) > MAX_REQUEST_BYTES else None)
    if b"transfer-encoding" not in headers:
        return receive, None
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if size > MAX_REQUEST_BYTES:
            return receive, _too_large(scope)
        if not message.get("more_body", False):
            break

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay, None
