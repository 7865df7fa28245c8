"""Request bodies are bounded (``api/body_limit.py``): a body over the bound answers 413
``PAYLOAD_TOO_LARGE`` without being read whole, whether announced or chunked."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.body_limit import MAX_REQUEST_BYTES
from api.middleware import RequestContextMiddleware


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


APP = RequestContextMiddleware(Starlette(routes=[Route("/echo", _echo, methods=["POST"])]))
JSON = {"content-type": "application/json"}


async def _chunks(total: int) -> AsyncIterator[bytes]:
    step = 1024 * 1024
    for start in range(0, total, step):
        yield b" " * min(step, total - start)


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_over_the_bound_is_413_and_one_under_it_passes(chunked: bool) -> None:
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for size, status in ((MAX_REQUEST_BYTES, 200), (MAX_REQUEST_BYTES + 1, 413)):
            body = _chunks(size) if chunked else b" " * size
            resp = await c.post("/echo", content=body, headers=JSON)
            assert resp.status_code == status, resp.text
            if status == 413:
                assert resp.headers["content-type"] == "application/problem+json"
                assert resp.json()["type"] == "PAYLOAD_TOO_LARGE"
            else:
                assert resp.json() == {"size": size}
