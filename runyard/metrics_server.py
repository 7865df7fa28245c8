"""The worker's metrics endpoints: Runyard's on ``RUNYARD_WORKER_METRICS_PORT`` and the
Temporal SDK's own (its Core runtime telemetry: task slots, poll and schedule-to-start
latencies, sticky cache …) on the port after it, both on ``RUNYARD_METRICS_HOST``.

Two ports because the SDK's exporter is a server of the Rust core that binds its own
address; both answer ``GET /metrics`` in the Prometheus text format.
"""

from __future__ import annotations

import structlog
from prometheus_client import start_http_server
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from runyard import metrics
from runyard.settings import Settings

log = structlog.get_logger("runyard.worker")


def serve_worker_metrics(settings: Settings) -> Runtime | None:
    """Start serving (when the port is set); returns the runtime the worker's client uses."""
    port = settings.worker_metrics_port
    if port is None:
        return None
    host = settings.metrics_host
    try:
        # A daemon thread, for the life of the process.
        start_http_server(port, addr=host, registry=metrics.WORKER)
        runtime = Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(
                    bind_address=f"{host}:{port + 1}",
                    counters_total_suffix=True,
                    durations_as_seconds=True,
                )
            )
        )
    except (OSError, RuntimeError) as exc:  # a port in use: one line, not a traceback
        raise SystemExit(
            f"runyard worker: cannot serve metrics on {host}:{port} and {port + 1} "
            f"(RUNYARD_WORKER_METRICS_PORT): {exc}"
        ) from None
    log.info("metrics.serving", host=host, port=port, temporal_sdk_port=port + 1)
    return runtime
