"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from api.auth import KeyCache
from api.codec_server import install_codec_server
from api.deps import declare_bearer
from api.errors import install_error_handlers
from api.langgraph import mount as mount_langgraph
from api.middleware import RequestContextMiddleware
from api.observability import MetricsMiddleware, metrics_port
from api.observability import router as metrics_router
from api.orchestrator import TemporalConnector
from api.ratelimit import RateLimiter
from api.responses import install_openapi
from api.routes import (
    agents,
    api_keys,
    approvals,
    artifacts,
    checkpoints,
    connection,
    events,
    health,
    messages,
    run_control,
    run_input,
    runs,
    schedules,
    templates,
    threads,
    usage,
    webhooks,
)
from api.shutdown import on_stop_signal
from api.streams import StreamCaps
from runyard import __version__, tracing
from runyard.datadir import private_data_dir
from runyard.db.engine import Database, migrate
from runyard.gc_tuning import freeze_heap
from runyard.notifier import EventNotifier
from runyard.secrets import load_secret_key
from runyard.settings import Settings, get_settings

# Where the documentation pages' assets are served (same origin as the pages).
DOCS_ASSETS = "/docs/assets"


def create_app(settings: Settings | None = None, *, run_migrations: bool = True) -> FastAPI:
    settings = settings or get_settings()
    tracing.setup("runyard-api")  # on only with OTEL_EXPORTER_OTLP_ENDPOINT

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        private_data_dir(settings.data_dir)  # before anything is created there
        if run_migrations:
            migrate(settings.db_url)
        app.state.secret_key = load_secret_key(settings)
        app.state.db = Database(settings.db_url)
        app.state.notifier = EventNotifier(app.state.db, ping_seconds=settings.sse_ping_seconds)
        await app.state.notifier.start()
        freeze_heap()
        try:
            # SIGTERM/SIGINT: the event streams end at once, not at uvicorn's deadline.
            with on_stop_signal(app.state.notifier.close_streams):
                async with metrics_port(app):
                    yield
        finally:
            await app.state.notifier.stop()
            app.state.rate_limiter.close()
            await app.state.db.dispose()

    # /docs (Swagger UI) and /redoc with their scripts, styles and icon served by this
    # process from the fastapi-offline package: they work without internet (FastAPI's
    # own pages load them from a CDN, and were blank offline).
    app = FastAPIOffline(
        title="Runyard",
        version=__version__,
        description="Run AI coding agents as durable Temporal workflows.",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        # Swagger UI never sends the document to an outside validator.
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.settings = settings
    app.state.temporal = TemporalConnector(settings)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
    app.state.key_cache = KeyCache(settings.api_key_cache_seconds)
    app.state.stream_caps = StreamCaps(
        per_token=settings.max_streams_per_token,
        per_key=settings.max_streams_per_key,
        per_org=settings.max_streams_per_org,
        retry_after=settings.sse_ping_seconds,
    )
    install_error_handlers(app)
    install_openapi(app, declare_bearer)
    install_codec_server(app, settings)  # with RUNYARD_PAYLOAD_KEYS only
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(MetricsMiddleware)  # outermost: it sees every answer, 500s included
    app.include_router(health.router)
    app.include_router(metrics_router)
    app.include_router(runs.router)
    app.include_router(run_control.router)
    app.include_router(run_input.router)
    app.include_router(events.router)
    app.include_router(threads.router)
    app.include_router(agents.router)
    app.include_router(webhooks.router)
    app.include_router(connection.router)
    app.include_router(api_keys.router)
    app.include_router(usage.router)
    app.include_router(artifacts.router)
    app.include_router(templates.router)
    mount_langgraph(app, settings)  # /lg, with RUNYARD_LANGGRAPH_COMPAT=on
    app.include_router(messages.router)
    app.include_router(schedules.router)
    app.include_router(checkpoints.router)
    app.include_router(approvals.router)
    return app
