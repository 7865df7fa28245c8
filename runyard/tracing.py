"""OpenTelemetry traces: API request -> workflow -> activities -> model call -> tool.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (then spans go out by OTLP over HTTP,
with the standard ``OTEL_*`` variables: headers, service name, sampler …). When off,
nothing is installed: no interceptor, no span, no cost.

When on, the Temporal SDK's ``TracingInterceptor`` is on every Temporal client (so on the
worker too): it carries the trace through Temporal headers, so the workflow's spans and
every activity's join the trace of the request that started the workflow, and that
trace's id is the run's ``traceId``. Runyard adds its own spans: the HTTP request, the
model call, the tool call, with ``runyard.run_id``, ``runyard.org_id`` and
``runyard.model`` as attributes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

_TRACER_NAME = "runyard"
_provider: TracerProvider | None = None


def enabled() -> bool:
    return _provider is not None


def setup(service_name: str) -> bool:
    """Turn tracing on for this process if ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set."""
    if enabled():
        return True
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    install(OTLPSpanExporter(), service_name=service_name, batch=True)
    return True


def install(exporter: SpanExporter, *, service_name: str = "runyard", batch: bool = False) -> None:
    """Export this process's spans to ``exporter`` (tests pass an in-memory exporter)."""
    global _provider
    # OTEL_SERVICE_NAME (and OTEL_RESOURCE_ATTRIBUTES) win over Runyard's default name.
    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(named))
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    _provider = provider


def uninstall() -> None:
    """Turn tracing off again (tests); spans in flight are flushed."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
    _provider = None


def tracer() -> trace.Tracer:
    return (_provider or trace.NoOpTracerProvider()).get_tracer(_TRACER_NAME)


def client_interceptors() -> list[Any]:
    """The Temporal client's interceptors: the SDK's tracing one when tracing is on."""
    if not enabled():
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(tracer())]


def worker_interceptors() -> Sequence[Interceptor]:
    """Added on the worker (after the client's): the run id on every activity's span."""
    return [_RunAttributes()] if enabled() else []


def current_trace_id() -> str | None:
    """The current trace's id as 32 hex digits, or None when no span is recording."""
    if not enabled():
        return None
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def annotate(
    *, run_id: str | None = None, org_id: str | None = None, model: str | None = None
) -> None:
    """Put the run's identity on the current span (a no-op when tracing is off)."""
    if not enabled():
        return
    span = trace.get_current_span()
    if not span.is_recording():
        return
    for key, value in (("run_id", run_id), ("org_id", org_id), ("model", model)):
        if value is not None:
            span.set_attribute(f"runyard.{key}", value)


@contextmanager
def span(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    *,
    headers: Mapping[str, str] | None = None,
    **attributes: str,
) -> Iterator[Span | None]:
    """A child span of the current one (or of a W3C ``traceparent`` in ``headers``), or
    nothing at all when tracing is off."""
    if not enabled():
        yield None
        return
    attrs = {f"runyard.{k}": v for k, v in attributes.items()}
    parent = TraceContextTextMapPropagator().extract(headers) if headers else None
    with tracer().start_as_current_span(
        name, context=parent, kind=kind, attributes=attrs
    ) as current:
        yield current


class _RunAttributes(Interceptor):
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _RunAttributesInbound(next)


class _RunAttributesInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        run_id = getattr(input.args[0], "run_id", None) if input.args else None
        if not isinstance(run_id, str) and activity.info().workflow_type == "RunWorkflow":
            run_id = activity.info().workflow_id
        annotate(run_id=run_id if isinstance(run_id, str) else None)
        return await self.next.execute_activity(input)
