"""``GET /healthz``: can this API process reach the store and Temporal?"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness of the API, its store and Temporal")
async def healthz(request: Request) -> JSONResponse:
    body = {"status": "ok", "database": "ok", "temporal": "ok"}
    try:
        async with request.app.state.db.session() as s:
            await asyncio.wait_for(s.execute(text("SELECT 1")), 3)
    except Exception as exc:
        body["database"] = f"error: {type(exc).__name__}"
    try:
        runs = await request.app.state.temporal()
        await asyncio.wait_for(runs.temporal.service_client.check_health(), 3)
    except Exception as exc:
        body["temporal"] = f"error: {getattr(exc, 'detail', None) or type(exc).__name__}"
    ok = body["database"] == "ok" and body["temporal"] == "ok"
    if not ok:
        body["status"] = "degraded"
    return JSONResponse(body, status_code=200 if ok else 503)
