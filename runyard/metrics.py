"""Every Prometheus metric Runyard exports, defined once, with the helpers that record them.

Names and labels live here only, so docs/operations.md and the dashboards have one place
to read. Label values are bounded: route templates (never paths), tool names from the
fixed tool set (else ``other``), model names from the known models (else their family),
never a run, organization or user id.

Each process kind records into its own registry (``API``, ``WORKER``) and serves it: the API
on ``/metrics`` (or ``RUNYARD_METRICS_PORT``), the worker on ``RUNYARD_WORKER_METRICS_PORT``.
Counters of the worker are recorded after the store write they count has committed, and a
retried activity that finds its work done records nothing: they are exact, except the
sandbox counters, which are at least once (a provision or destroy retried after it
succeeded counts twice).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from runyard.llm.pricing import ALIASES, SCRIPTED, resolve_model

__all__ = ["CONTENT_TYPE_LATEST", "render"]

# No `*_created` series beside each counter: they double the output and nobody alerts on them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# One registry per process kind, so neither serves zero-valued copies of the other's
# metrics; each also carries the process's own (CPU, memory, file descriptors, GC).
API = CollectorRegistry()
WORKER = CollectorRegistry()
for _registry in (API, WORKER):
    ProcessCollector(registry=_registry)
    PlatformCollector(registry=_registry)
    GCCollector(registry=_registry)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# Runs (the worker counts started and ended; the API counts created).
RUNS_CREATED = Counter(
    "runyard_runs_created", "Runs created (POST /v1/runs, thread runs).", registry=API
)
RUNS_STARTED = Counter(
    "runyard_runs_started", "Runs that went queued -> pending (exec).", registry=WORKER
)
RUNS_ENDED = Counter(
    "runyard_runs_ended",
    "Runs that reached a terminal status, by status and fail reason (none when not failed).",
    ["status", "fail_reason"],
    registry=WORKER,
)
# Filled from the store when the API is scraped: the truth, whichever process moved a run.
RUNS_OPEN = Gauge("runyard_runs_open", "Runs not yet ended, by status.", ["status"], registry=API)
WEBHOOKS_PENDING = Gauge(
    "runyard_webhook_deliveries_pending",
    "Webhook and callback deliveries not yet final.",
    registry=API,
)

# Model turns.
MODEL_TURNS = Counter(
    "runyard_model_turns", "Model turns completed, by model.", ["model"], registry=WORKER
)
MODEL_TOKENS = Counter(
    "runyard_model_tokens",
    "Tokens of completed model turns, by model and kind (input, output, cache_read, cache_write).",
    ["model", "kind"],
    registry=WORKER,
)
MODEL_COST = Counter(
    "runyard_model_cost_usd", "US dollars of model turns, by model.", ["model"], registry=WORKER
)
MODEL_TURN_SECONDS = Histogram(
    "runyard_model_turn_duration_seconds",
    "Time of one model call (streamed to the end), by model.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
    registry=WORKER,
)

# Tools.
TOOL_CALLS = Counter(
    "runyard_tool_calls",
    "Tool calls run in sandboxes, by tool and is_error.",
    ["tool", "error"],
    registry=WORKER,
)
TOOL_SECONDS = Histogram(
    "runyard_tool_duration_seconds",
    "Time of one tool call in its sandbox, by tool.",
    ["tool"],
    buckets=_LATENCY_BUCKETS,
    registry=WORKER,
)

# Sandboxes (at least once: a retried provision or destroy counts again).
SANDBOXES_PROVISIONED = Counter(
    "runyard_sandboxes_provisioned",
    "Sandboxes provisioned, by provider.",
    ["provider"],
    registry=WORKER,
)
SANDBOXES_DESTROYED = Counter(
    "runyard_sandboxes_destroyed",
    "Sandboxes destroyed by their run, by provider.",
    ["provider"],
    registry=WORKER,
)
SANDBOXES_REAPED = Counter(
    "runyard_sandboxes_reaped",
    "Leaked sandboxes (their run ended or is gone) destroyed by the reaper, by provider.",
    ["provider"],
    registry=WORKER,
)

# Events and streams (API).
EVENT_DELIVERY_LAG = Histogram(
    "runyard_event_delivery_lag_seconds",
    "From an event's commit (its createdAt) to its write on an SSE stream that was open "
    "when it was appended (replays of older events are not counted).",
    buckets=_LAG_BUCKETS,
    registry=API,
)
SSE_STREAMS = Gauge(
    "runyard_sse_streams_open", "SSE event streams open in this API process.", registry=API
)

# Webhooks (worker).
WEBHOOK_DELIVERIES = Counter(
    "runyard_webhook_attempts",
    "Webhook and callback delivery attempts, by outcome (delivered, retry, failed, gone, "
    "forbidden, cancelled).",
    ["outcome"],
    registry=WORKER,
)

# HTTP (API).
HTTP_REQUESTS = Counter(
    "runyard_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=API,
)
HTTP_SECONDS = Histogram(
    "runyard_http_request_duration_seconds",
    "Time to the response's start (an SSE stream counts until its headers), by route.",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
    registry=API,
)

_KNOWN_MODELS = frozenset({SCRIPTED, *ALIASES.values()})
_FAMILIES = ("opus", "sonnet", "haiku")
_TOOL_NAMES: frozenset[str] = frozenset()


def model_label(model: str) -> str:
    """A bounded label for a run's model: a known model id, else ``claude-<family>-*``."""
    resolved = resolve_model(model)
    if resolved in _KNOWN_MODELS:
        return resolved
    family = next((f for f in _FAMILIES if f in resolved), None)
    return f"claude-{family}-*" if family else "other"


def tool_label(name: str) -> str:
    global _TOOL_NAMES
    if not _TOOL_NAMES:
        from runyard.tools import TOOLS

        _TOOL_NAMES = frozenset(str(t["name"]) for t in TOOLS)
    return name if name in _TOOL_NAMES else "other"


def run_created() -> None:
    RUNS_CREATED.inc()


def run_started() -> None:
    RUNS_STARTED.inc()


def run_ended(status: str, fail_reason: str | None) -> None:
    RUNS_ENDED.labels(status, fail_reason or "none").inc()


def model_turn(model: str, seconds: float, tokens: dict[str, int], cost_usd: float) -> None:
    label = model_label(model)
    MODEL_TURNS.labels(label).inc()
    MODEL_TURN_SECONDS.labels(label).observe(seconds)
    for kind, count in tokens.items():
        if count:
            MODEL_TOKENS.labels(label, kind).inc(count)
    if cost_usd > 0:
        MODEL_COST.labels(label).inc(cost_usd)


def tool_call(name: str, seconds: float, *, error: bool) -> None:
    label = tool_label(name)
    TOOL_CALLS.labels(label, "true" if error else "false").inc()
    TOOL_SECONDS.labels(label).observe(seconds)


def sandbox_provisioned(provider: str) -> None:
    SANDBOXES_PROVISIONED.labels(provider).inc()


def sandbox_destroyed(provider: str) -> None:
    SANDBOXES_DESTROYED.labels(provider).inc()


def sandboxes_reaped(count: int, provider: str = "local") -> None:
    """For the reaper: call once per sweep with how many leaked sandboxes it destroyed."""
    if count > 0:
        SANDBOXES_REAPED.labels(provider).inc(count)


def webhook_attempt(outcome: str) -> None:
    WEBHOOK_DELIVERIES.labels(outcome).inc()


def events_delivered(created_at: Iterable[float], opened_at: float) -> None:
    """Observe append -> delivery lag of events appended after the stream opened."""
    now = time.time()
    for created in created_at:
        if created >= opened_at:
            EVENT_DELIVERY_LAG.observe(max(0.0, now - created))


def set_open_runs(counts: dict[str, int], statuses: Iterable[str]) -> None:
    for status in statuses:
        RUNS_OPEN.labels(status).set(counts.get(status, 0))


def render(registry: CollectorRegistry = API) -> bytes:
    """A process's metrics (the API's by default) in the Prometheus text format."""
    return generate_latest(registry)
