"""Prometheus metrics: a scripted run on a stack of its own moves every counter by exactly
what the run did; the API's /metrics moves to its own port when the operator says so."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from runyard.db.engine import Database
from runyard.devserver import free_port
from runyard.settings import Settings
from tests.conftest import Keys, async_db_url, in_process_api, launch_stack, stack_env
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.receiver import Receiver
from tests.stack import Stack

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def _port_pair() -> int:
    """A free port whose successor is free too (the Temporal SDK's metrics take it)."""
    for _ in range(50):
        port = free_port()
        try:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="module")
def metrics_stack(
    tmp_path_factory: pytest.TempPathFactory, temporal_server: str, fake_anthropic: FakeAnthropic
) -> Iterator[tuple[Stack, int]]:
    """A stack of its own, so nothing else moves its counters; the worker serves metrics."""
    data = tmp_path_factory.mktemp("runyard-metrics")
    port = _port_pair()
    env = stack_env(
        data, temporal_server, fake_anthropic.base_url, RUNYARD_WORKER_METRICS_PORT=str(port)
    )
    s = launch_stack(data, env)
    yield s, port
    s.stop()


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as c:
        for _ in range(200):  # the worker's server starts with the worker
            try:
                resp = await c.get(url)
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"nothing answers at {url}")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return parse(resp.text)


async def test_a_run_moves_the_counters_by_what_it_did(
    metrics_stack: tuple[Stack, int], receiver: Receiver
) -> None:
    stack, worker_port = metrics_stack
    db = Database(async_db_url(stack.env))
    key = await Keys(db).make("org-" + secrets.token_hex(4))
    await db.dispose()
    api_metrics = f"{stack.api_url}/metrics"  # no key needed
    worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"
    api_before, worker_before = await scrape(api_metrics), await scrape(worker_metrics)

    callback = f"cb-{secrets.token_hex(4)}"
    receiver.answer(callback, 500)  # the first attempt fails, the second is delivered
    prompt = "#!scripted\n" + "\n".join(
        json.dumps(line)
        for line in [
            {"tool": "bash", "input": {"command": "true"}, "usage": {"inputTokens": 100}},
            {"tool": "read_file", "input": {"path": "no/such/file"}, "usage": {"inputTokens": 7}},
            {"text": "done", "usage": {"inputTokens": 11, "outputTokens": 5}},
        ]
    )
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as api:
        created = await api.post(
            "/v1/runs",
            json={"prompt": prompt, "model": "scripted", "callbackUrl": receiver.url(callback)},
        )
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        queued = await scrape(api_metrics)
        assert value(queued, "runyard_runs_open", status="queued") == 1
        assert value(queued, "runyard_sse_streams_open") == 0

        frames: list[dict[str, Any]] = []
        connected = asyncio.Event()

        async def follow() -> None:
            async with api.stream("GET", f"/v1/runs/{run_id}/events") as resp:
                async for line in resp.aiter_lines():
                    if line.startswith(": connected"):
                        connected.set()
                    if line.startswith("data: "):
                        frames.append(json.loads(line.removeprefix("data: ")))

        stream = asyncio.create_task(follow())
        await asyncio.wait_for(connected.wait(), 15)
        streaming = await scrape(api_metrics)
        assert value(streaming, "runyard_sse_streams_open") == 1
        assert (await api.post(f"/v1/runs/{run_id}/exec")).status_code == 202
        await asyncio.wait_for(stream, 60)  # the stream ends at the terminal event
        run = (await api.get(f"/v1/runs/{run_id}")).json()
    assert run["status"] == "completed", run
    await asyncio.to_thread(receiver.wait_for, callback, 2)
    api_after = await scrape(api_metrics)

    # The API: one run created, its requests by route template, the stream closed again,
    # and one lag observation per event appended while the stream was open (all but
    # run.created).
    assert delta(api_before, api_after, "runyard_runs_created_total") == 1
    post = {"method": "POST", "status": "201", "route": "/v1/runs"}
    assert delta(api_before, api_after, "runyard_http_requests_total", **post) == 1
    exec_ = {"method": "POST", "status": "202", "route": "/v1/runs/{run_id}/exec"}
    assert delta(api_before, api_after, "runyard_http_requests_total", **exec_) == 1
    assert value(api_after, "runyard_sse_streams_open") == 0
    assert value(api_after, "runyard_runs_open", status="queued") == 0
    assert frames[0]["type"] == "run.created" and frames[-1]["type"] == "run.completed"
    lag = "runyard_event_delivery_lag_seconds_count"
    assert delta(api_before, api_after, lag) == len(frames) - 1
    assert not any(run_id in str(labels) for _, labels in api_after)  # never a run id label
    # Each process serves its own metrics only, never zero-valued copies of the other's.
    assert not {name for name, _ in api_after} & {"runyard_runs_started_total"}

    # The worker: counted once each, after their commits.
    w: Samples = {}
    for _ in range(100):  # the last counters move just after the run's status does
        w = await scrape(worker_metrics)
        if delta(worker_before, w, "runyard_webhook_attempts_total", outcome="delivered"):
            break
        await asyncio.sleep(0.1)
    assert delta(worker_before, w, "runyard_runs_started_total") == 1
    assert not {name for name, _ in w} & {"runyard_runs_created_total", "runyard_sse_streams_open"}
    ended = {"status": "completed", "fail_reason": "none"}
    assert delta(worker_before, w, "runyard_runs_ended_total", **ended) == 1
    assert delta(worker_before, w, "runyard_model_turns_total", model="scripted") == 3
    tokens = "runyard_model_tokens_total"
    assert delta(worker_before, w, tokens, model="scripted", kind="input") == 118
    usage = run["usage"]
    assert delta(worker_before, w, tokens, model="scripted", kind="input") == usage["inputTokens"]
    assert delta(worker_before, w, tokens, model="scripted", kind="output") == usage["outputTokens"]
    cost = delta(worker_before, w, "runyard_model_cost_usd_total", model="scripted")
    assert cost == pytest.approx(run["usage"]["costUsd"], abs=1e-6)
    calls = "runyard_tool_calls_total"
    assert delta(worker_before, w, calls, tool="bash", error="false") == 1
    assert delta(worker_before, w, calls, tool="read_file", error="true") == 1
    assert delta(worker_before, w, "runyard_tool_duration_seconds_count", tool="bash") == 1
    turns = "runyard_model_turn_duration_seconds_count"
    assert delta(worker_before, w, turns, model="scripted") == 3
    assert delta(worker_before, w, "runyard_sandboxes_provisioned_total", provider="local") == 1
    assert delta(worker_before, w, "runyard_sandboxes_destroyed_total", provider="local") == 1
    attempts = "runyard_webhook_attempts_total"
    assert delta(worker_before, w, attempts, outcome="retry") == 1
    assert delta(worker_before, w, attempts, outcome="delivered") == 1

    # The Temporal SDK's own metrics, on the next port.
    sdk = await scrape(f"http://127.0.0.1:{worker_port + 1}/metrics")
    assert any(name.startswith("temporal_") for name, _ in sdk)


async def test_metrics_port_moves_metrics_off_the_api_port(tmp_path: Path) -> None:
    port = free_port()
    async with in_process_api(tmp_path, "org-metrics-port", metrics_port=port) as api:
        assert (await api.get("/v1/runs/run_nope")).status_code == 404
        assert (await api.get("/metrics")).status_code == 404
        assert (await api.get("/no/such/path-abc123")).status_code == 404
        async with httpx.AsyncClient(timeout=10) as c:
            got = parse((await c.get(f"http://127.0.0.1:{port}/metrics")).text)
        route = {"method": "GET", "route": "/v1/runs/{run_id}", "status": "404"}
        assert value(got, "runyard_http_requests_total", **route) >= 1
        # Paths that match no route share one label, whatever the path.
        unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
        assert value(got, "runyard_http_requests_total", **unmatched) >= 1
        assert not any("abc123" in str(labels) for _, labels in got)


def test_metrics_port_setting_is_bounded() -> None:
    with pytest.raises(ValueError):
        Settings(metrics_port=70000)
