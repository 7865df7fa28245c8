"""``GET /healthz``: can this API process reach the store and Temporal?"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from api.responses import operation_id
from api.responses_org import Health

router = APIRouter(generate_unique_id_function=operation_id, tags=["health"])


@router.get(
    "/healthz",
    summary="Liveness of the API, its store and Temporal",
    response_model=Health,
    responses={503: {"model": Health, "description": "The store or Temporal is unreachable"}},
)
async def healthz(request: Request, response: Response) -> dict[str, Any]:
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
    response.status_code = 200 if ok else 503
    return body
