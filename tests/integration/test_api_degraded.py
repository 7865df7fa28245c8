"""The API with no Anthropic key and no reachable Temporal: clear errors, nothing lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import in_process_api, script


@pytest.fixture
async def lonely_api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_api(tmp_path, "lonely", anthropic_api_key=None) as client:
        yield client


async def test_anthropic_model_without_key(lonely_api: httpx.AsyncClient) -> None:
    for model in ("sonnet", "claude-sonnet-4-5", "anthropic/claude-opus-4-5", None):
        body = {"prompt": "x"} | ({"model": model} if model else {})
        resp = await lonely_api.post("/v1/runs", json=body)
        assert resp.status_code == 400 and resp.json()["type"] == "RUN_API_KEY_REQUIRED", resp.text


async def test_temporal_unreachable(lonely_api: httpx.AsyncClient) -> None:
    resp = await lonely_api.post(
        "/v1/runs", json={"prompt": script({"text": "x"}), "model": "scripted"}
    )
    assert resp.status_code == 502, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["type"] == "RUN_ORCHESTRATOR_ERROR"
    # Nothing half-made is left behind.
    assert (await lonely_api.get("/v1/runs")).json()["pagination"]["total"] == 0
    health = await lonely_api.get("/healthz")
    assert health.status_code == 503
    assert health.json()["database"] == "ok" and health.json()["temporal"] != "ok"
