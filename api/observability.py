"""The API's metrics and traces: a middleware that counts (and, with tracing on, traces)
every request by its route template, and ``GET /metrics`` in the Prometheus text format.

``/metrics`` needs no key. With ``RUNYARD_METRICS_PORT`` set it is served on that port
only (``RUNYARD_METRICS_HOST``, default 127.0.0.1) and ``/metrics`` on the API's port
answers 404. The gauges read from the store (open runs by status, pending webhook
deliveries) are refreshed at each scrape of the main port, and every 10 s on the metrics
port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from opentelemetry.trace import SpanKind
from sqlalchemy import func, select
from sqlmodel import col
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runyard import metrics, tracing
from runyard.db.engine import Database
from runyard.db.tables import Run, WebhookDelivery
from runyard.domain import OPEN_STATUSES

log = structlog.get_logger("runyard.api")
router = APIRouter(tags=["operations"])
_REFRESH_SECONDS = 10.0


class MetricsMiddleware:
    """Counts each answered request by method, route template and status; with tracing
    on, each request is a server span (the root of a run's trace for a create)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                metrics.HTTP_SECONDS.labels(scope["method"], _route(scope)).observe(
                    time.perf_counter() - started
                )
            await send(message)

        try:
            if tracing.enabled():
                # A caller's W3C traceparent is honoured: the request (and a run it
                # creates) joins the caller's trace.
                headers = {
                    k.decode("latin-1"): v.decode("latin-1")
                    for k, v in scope.get("headers") or []
                    if k in (b"traceparent", b"tracestate")
                }
                name = f"{scope['method']} {scope['path']}"
                with tracing.span(name, SpanKind.SERVER, headers=headers) as span:
                    await self.app(scope, receive, send_wrapper)
                    if span is not None:
                        route = _route(scope)
                        span.update_name(f"{scope['method']} {route}")
                        span.set_attribute("http.request.method", scope["method"])
                        span.set_attribute("http.route", route)
                        span.set_attribute("http.response.status_code", status)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            metrics.HTTP_REQUESTS.labels(scope["method"], _route(scope), str(status)).inc()


def _route(scope: Scope) -> str:
    """The matched route's template (``/v1/runs/{run_id}``), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


async def refresh_gauges(db: Database) -> None:
    """Open runs by status and pending deliveries, from the store."""

    async def counts() -> tuple[dict[str, int], int]:
        async with db.session() as s:
            rows = await s.execute(
                select(col(Run.status), func.count())
                .where(col(Run.status).in_(list(OPEN_STATUSES)))
                .group_by(col(Run.status))
            )
            by_status = {str(status): int(n) for status, n in rows.all()}
            pending = (
                await s.execute(
                    select(func.count())
                    .select_from(WebhookDelivery)
                    .where(col(WebhookDelivery.status) == "pending")
                )
            ).scalar_one()
        return by_status, int(pending)

    by_status, pending = await counts()
    metrics.set_open_runs(by_status, sorted(OPEN_STATUSES))
    metrics.WEBHOOKS_PENDING.set(pending)


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    if request.app.state.settings.metrics_port is not None:
        return Response(status_code=404)  # served on its own port
    try:
        await asyncio.wait_for(refresh_gauges(request.app.state.db), 5)
    except Exception as exc:  # the store away: the process's own counters still answer
        log.warning("metrics.refresh_failed", error=str(exc))
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)


@asynccontextmanager
async def metrics_port(app: FastAPI) -> AsyncIterator[None]:
    """With ``RUNYARD_METRICS_PORT``: serve the metrics there while the app runs."""
    settings = app.state.settings
    if settings.metrics_port is None:
        yield
        return
    from prometheus_client import start_http_server

    server, thread = start_http_server(
        settings.metrics_port, addr=settings.metrics_host, registry=metrics.API
    )
    log.info("metrics.serving", host=settings.metrics_host, port=settings.metrics_port)

    async def refresh() -> None:
        while True:
            try:
                await refresh_gauges(app.state.db)
            except Exception as exc:
                log.warning("metrics.refresh_failed", error=str(exc))
            await asyncio.sleep(_REFRESH_SECONDS)

    task: asyncio.Task[Any] = asyncio.create_task(refresh(), name="metrics-refresh")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        server.shutdown()
        server.server_close()
        thread.join(5)
