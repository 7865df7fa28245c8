"""OpenTelemetry traces: the API and a worker in this process, their spans in memory.

A run's ``traceId`` is the trace of the request that created it; the workflow and every
activity (local ones too), the model call and the tool call join it, each activity's span
with the run id. The exec request is a trace of its own, linked from the workflow's
update span.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.app import create_app
from runyard import tracing
from runyard.db.engine import Database
from runyard.settings import Settings
from runyard.temporal import connect
from tests.conftest import TERMINAL, Keys, script, wait_for
from worker import build_workers

ACTIVITIES = {
    "start_run",
    "provision_sandbox",
    "mark_running",
    "run_turn_and_tools",  # the model turn and its tool calls (activities/cycle.py)
    "collect_outputs",
    "destroy_sandbox",
    "finish_run",
}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.install(exporter)
    yield exporter
    tracing.uninstall()


@pytest.fixture
async def traced_api(
    tmp_path: Path, temporal_server: str, spans: InMemorySpanExporter
) -> AsyncIterator[httpx.AsyncClient]:
    """The API app and a worker in this process, both traced, on a task queue of their own."""
    settings = Settings(
        data_dir=tmp_path,
        temporal_address=temporal_server,
        task_queue="runyard-" + secrets.token_hex(4),
        min_timeout_seconds=1,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        db = Database(settings.db_url)
        shared, host = build_workers(await connect(settings), settings, db)
        key = await Keys(app.state.db).make("org-traced")
        try:
            async with shared, host:
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://api",
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=30,
                ) as client:
                    yield client
        finally:
            await db.dispose()


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_one_trace_from_the_create_request_through_every_activity(
    traced_api: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    prompt = script({"tool": "bash", "input": {"command": "echo hi"}}, {"text": "done"})
    created = await traced_api.post("/v1/runs", json={"prompt": prompt, "model": "scripted"})
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    assert (await traced_api.post(f"/v1/runs/{run_id}/exec")).status_code == 202
    run = await wait_for(traced_api, run_id, TERMINAL, timeout=60)
    assert run["status"] == "completed", run

    trace_id = run["traceId"]
    assert len(trace_id) == 32 and int(trace_id, 16) != 0
    # The sandbox's destroy runs beside the terminal write: its span may end just after.
    for _ in range(100):
        finished = spans.get_finished_spans()
        in_trace = [s for s in finished if format(s.context.trace_id, "032x") == trace_id]
        names = {s.name for s in in_trace}
        if "RunActivity:destroy_sandbox" in names:
            break
        await asyncio.sleep(0.1)

    # The root: the create request, with the run's identity.
    (root,) = [s for s in in_trace if s.parent is None]
    assert root.name == "POST /v1/runs"
    assert _attrs(root)["runyard.run_id"] == run_id
    assert _attrs(root)["runyard.org_id"].startswith("org_")
    assert _attrs(root)["runyard.model"] == "scripted"
    assert "StartWorkflow:RunWorkflow" in names and "RunWorkflow:RunWorkflow" in names

    # Every activity of the run, in the same trace, each with the run id.
    ran = {s.name.removeprefix("RunActivity:"): s for s in in_trace if s.name.startswith("RunAc")}
    assert ACTIVITIES <= set(ran), sorted(names)
    for name in ACTIVITIES:
        assert _attrs(ran[name])["runyard.run_id"] == run_id, name

    # The model call and the tool call, under their activities.
    by_id = {s.context.span_id: s for s in in_trace}
    models = [s for s in in_trace if s.name == "model.call"]
    assert len(models) == 2  # two turns: the tool call, then the answer
    for model in models:
        assert _attrs(model)["runyard.model"] == "scripted"
        assert _attrs(model)["runyard.run_id"] == run_id
        assert model.parent is not None
        assert by_id[model.parent.span_id].name == "RunActivity:run_turn_and_tools"
    (tool,) = [s for s in in_trace if s.name == "tool bash"]
    cycle = "RunActivity:run_turn_and_tools"
    assert tool.parent is not None and by_id[tool.parent.span_id].name == cycle

    # The exec request: a trace of its own, linked from the workflow's update span.
    (exec_span,) = [s for s in finished if s.name == "POST /v1/runs/{run_id}/exec"]
    exec_trace = exec_span.context.trace_id
    assert format(exec_trace, "032x") != trace_id
    linked = {link.context.trace_id for s in in_trace for link in s.links}
    assert exec_trace in linked


async def test_a_callers_traceparent_is_joined(
    traced_api: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    headers = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
    prompt = script({"text": "joined"})
    created = await traced_api.post(
        "/v1/runs", json={"prompt": prompt, "model": "scripted"}, headers=headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["traceId"] == trace_id
    (server,) = [s for s in spans.get_finished_spans() if s.name == "POST /v1/runs"]
    assert format(server.context.trace_id, "032x") == trace_id
    assert server.parent is not None and format(server.parent.span_id, "016x") == parent_id
    assert _attrs(server)["http.response.status_code"] == 201


async def test_tracing_off_installs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tracing off (the default, no OTEL_EXPORTER_OTLP_ENDPOINT): no interceptor, no span."""
    from tests.conftest import in_process_api

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert not tracing.setup("runyard-test") and not tracing.enabled()
    async with in_process_api(tmp_path, "org-untraced") as api:
        resp = await api.get("/v1/runs")
        assert resp.status_code == 200
    assert tracing.current_trace_id() is None
    assert tracing.client_interceptors() == []
