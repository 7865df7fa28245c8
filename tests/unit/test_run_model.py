"""The run object is defined once (``runyard.run_model``): the API's response model, the
row's rendering and the client's model are the same class, and the JSON is the contract's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from api import responses_runs
from api.auth import KeyCache, Principal
from runyard import client
from runyard.client import Runyard, RunyardAPIError
from runyard.db.tables import Run as RunRow
from runyard.domain import RunStatus
from runyard.run_model import CLIENT, Run
from runyard.store.run_view import run_model, run_object


def _row() -> RunRow:
    return RunRow(
        id="run_x",
        org_id="org_1",
        status="failed",
        prompt="p",
        template="default",
        model="sonnet",
        workflow_id="run_x",
        guardrails={"maxTurns": 3, "maxCostUsd": 5},
        sandbox={"id": "sbx_1", "provider": "local"},
        outputs=[{"type": "text", "text": "hi"}, {"type": "pr", "url": "u", "number": 3}],
        usage={"turns": 2, "costUsd": 0.5},
        fail_reason="error",
        error={"code": "MODEL_ERROR", "message": "boom"},
        metadata_={"a": [1, None]},
        created_at=datetime(2026, 1, 1),
        started_at=datetime(2026, 1, 1, 0, 0, 1),
        failed_at=datetime(2026, 1, 1, 0, 0, 3),
    )


def test_one_run_class_for_api_store_and_client() -> None:
    assert responses_runs.Run is Run
    assert client.Run is Run
    assert client.RunPage is responses_runs.RunPage
    assert client.ExecAccepted is responses_runs.ExecAccepted
    assert isinstance(run_model(_row()), Run)


def test_run_object_is_the_contract_json() -> None:
    usage: dict[str, Any] = {"turns": 2, "inputTokens": 0, "outputTokens": 0}
    usage |= {"cacheReadTokens": 0, "cacheWriteTokens": 0, "cacheHitRate": 0.0}
    usage |= {"costUsd": 0.5, "creditsUsed": 0}
    expected: dict[str, Any] = {
        "id": "run_x",
        "object": "run",
        "status": "failed",
        "prompt": "p",
        "guidance": None,
        "repo": None,
        "template": "default",
        "agentId": None,
        "threadId": None,
        "model": "sonnet",
        # 5 stays 5 (not 5.0); a missing guardrail is null
        "guardrails": {"maxTurns": 3, "maxCostUsd": 5, "timeoutSeconds": None},
        # what the row leaves out stays out: no nulls for a pr's missing fields
        "sandbox": {"id": "sbx_1", "provider": "local"},
        "outputs": [{"type": "text", "text": "hi"}, {"type": "pr", "url": "u", "number": 3}],
        "usage": usage,
        "failReason": "error",
        "error": {"code": "MODEL_ERROR", "message": "boom"},
        "metadata": {"a": [1, None]},
        "pendingQuestion": None,
        "traceId": None,
        "routeId": None,
        "personaId": None,
        "workflowId": "run_x",
        "createdAt": "2026-01-01T00:00:00Z",
        "startedAt": "2026-01-01T00:00:01Z",
        "completedAt": None,
        "failedAt": "2026-01-01T00:00:03Z",
        "cancelledAt": None,
        "durationMs": 2000,
        "scheduleId": None,
        "scheduledAt": None,
        "forkedFrom": None,
        "groupId": None,
    }
    got = run_object(_row())
    assert got == expected
    assert type(got["guardrails"]["maxCostUsd"]) is int
    # The client reads the same JSON back into the same object.
    back = Run.model_validate(got)
    assert back.wire() == expected and back.text == "hi" and back.is_terminal


def test_a_newer_servers_run_never_breaks_the_client() -> None:
    """A status this client does not know and a nullable field the server left out parse
    in the client; the server's own validation (no client context) still refuses both."""
    newer = run_object(_row()) | {"status": "paused_for_review", "reviewers": ["ana"]}
    for dropped in ("traceId", "routeId", "personaId", "pendingQuestion", "durationMs"):
        del newer[dropped]
    del newer["usage"]["cacheHitRate"]  # not nullable: a real break stays a break

    def answer(request: httpx.Request) -> httpx.Response:
        body = newer if request.url.path == "/v1/runs/run_x" else run_object(_row())
        return httpx.Response(200, json=body)

    with pytest.raises(ValidationError):
        Run.model_validate(newer, context=CLIENT)
    newer["usage"]["cacheHitRate"] = 0.0
    with Runyard("http://runyard.test", "key", transport=httpx.MockTransport(answer)) as ry:
        got = ry.get("run_x")
    assert got.status == "paused_for_review" and not got.is_terminal
    assert got.trace_id is None and got.duration_ms is None
    assert got.model_extra == {"reviewers": ["ana"]}
    assert Run.model_validate(run_object(_row()), context=CLIENT).status is RunStatus.FAILED
    with pytest.raises(ValidationError, match="status"):
        Run.model_validate(newer)  # the server holds what it renders to the schema
    server_side = run_object(_row())
    del server_side["traceId"]
    with pytest.raises(ValidationError, match="traceId"):
        Run.model_validate(server_side)


def _sse_client(content_type: str, body: bytes) -> Runyard:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/status"):
            return httpx.Response(200, json={"id": "run_x", "status": "completed"})
        return httpx.Response(200, headers={"content-type": content_type}, content=body)

    return Runyard("http://runyard.test", "key", transport=httpx.MockTransport(answer))


def test_event_stream_frames_are_parsed_by_httpx_sse() -> None:
    body = (
        b": ping\n\n"
        b'id: 1\nevent: run.started\ndata: {"seq": 1, "type": "run.started", "data": {},\n'
        b'data: "createdAt": "2026-01-01T00:00:00Z"}\n\n'
        b": ping\n\n"
        b'id: 2\nevent: run.completed\ndata: {"seq": 2, "type": "run.completed", "data": {}}\n\n'
    )
    with _sse_client("text/event-stream; charset=utf-8", body) as ry:
        events = list(ry.events("run_x"))
    assert [(e.seq, e.type) for e in events] == [(1, "run.started"), (2, "run.completed")]
    assert events[0].created_at == "2026-01-01T00:00:00Z"


def test_event_stream_of_another_server_is_a_problem() -> None:
    with (
        _sse_client("text/html", b"<html>Temporal UI</html>") as ry,
        pytest.raises(RunyardAPIError) as err,
    ):
        list(ry.events("run_x"))
    assert err.value.code == "NOT_RUNYARD_API"


def test_key_cache_keeps_valid_keys_until_forgotten() -> None:
    who = Principal(org_id="org_1", key_id="key_1", scopes=frozenset({"runs:read"}))
    cache = KeyCache(ttl=60, max_entries=2)
    cache.put("h1", who)
    assert cache.get("h1") is who and cache.get("h2") is None
    cache.put("h2", Principal(org_id="org_1", key_id="key_2", scopes=frozenset()))
    cache.put("h3", Principal(org_id="org_1", key_id="key_3", scopes=frozenset()))
    assert cache.get("h3") is not None  # bounded: an older entry made room
    cache.forget_key("key_3")
    assert cache.get("h3") is None
    off = KeyCache(ttl=0)
    off.put("h1", who)
    assert off.get("h1") is None
