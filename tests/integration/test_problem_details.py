"""Problem documents people can read: titles in plain English, a clear answer to a body
that is not JSON, ``WWW-Authenticate`` on 401, and unknown query parameters refused."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from api.errors import TITLES_BY_CODE, title_of
from runyard.domain import ErrorCode
from tests.conftest import Keys
from tests.integration.test_api_errors import assert_problem
from tests.stack import Stack


def problem_of(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert_problem(resp, status, code)
    body: dict[str, Any] = resp.json()
    return body


def test_every_code_has_a_title_in_plain_english() -> None:
    run_endings = {"RUN_EXPIRED", "SANDBOX_SETUP_FAILED", "MODEL_ERROR"}
    run_endings.add("RUN_RESOURCE_LIMIT_EXCEEDED")  # a run's error.code, never a problem
    run_endings.add("RUN_SUPERSEDED")  # a superseded thread run's error.code
    request_codes = [c for c in ErrorCode if c not in run_endings]
    for code in request_codes:
        assert code in TITLES_BY_CODE, code
    for name, title in TITLES_BY_CODE.items():
        # Not the code re-cased: "Api key invalid", "Run api key required".
        assert "Api" not in title and " api " not in title, name
    assert title_of("API_KEY_INVALID", 401) == "Invalid API key"
    assert title_of("AUTH_UNAUTHORIZED", 401) == "Authentication required"
    assert title_of("RUN_API_KEY_REQUIRED", 400) == "Model provider key not configured"
    assert title_of("SOMETHING_NEW", 409) == "Conflict"


async def test_401_titles_and_www_authenticate(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url) as c:
        missing = problem_of(await c.get("/v1/runs"), 401, "AUTH_UNAUTHORIZED")
        assert missing["title"] == "Authentication required"
        resp = await c.get("/v1/runs", headers={"Authorization": "Bearer ry_live_nope"})
        invalid = problem_of(resp, 401, "API_KEY_INVALID")
        assert invalid["title"] == "Invalid API key"
        assert resp.headers["www-authenticate"].startswith("Bearer ")
        assert 'error="invalid_token"' in resp.headers["www-authenticate"]
        resp = await c.post("/v1/runs/run_x/cancel")
        assert resp.status_code == 401 and resp.headers["www-authenticate"].startswith("Bearer")


async def test_run_not_found_title(api: httpx.AsyncClient) -> None:
    problem = problem_of(await api.get("/v1/runs/run_nope"), 404, "RUN_NOT_FOUND")
    assert problem["title"] == "Run not found"
    resp = await api.post("/v1/runs", json={"prompt": "x", "model": "scripted", "template": "no"})
    assert problem_of(resp, 400, "RUN_TEMPLATE_NOT_FOUND")["title"] == "Template not found"


async def test_malformed_json_names_the_body_not_a_byte_offset(api: httpx.AsyncClient) -> None:
    resp = await api.post(
        "/v1/runs",
        content=b'{"prompt": "x", "model": "scripted",,,,,}',
        headers={"Content-Type": "application/json"},
    )
    problem = problem_of(resp, 400, "VALIDATION_FAILED")
    assert problem["errors"] == [
        {"field": "body", "code": "json_invalid", "message": problem["errors"][0]["message"]}
    ]
    assert "not valid JSON" in problem["errors"][0]["message"]
    assert "at byte 36" in problem["errors"][0]["message"]
    empty = problem_of(await api.post("/v1/runs"), 400, "VALIDATION_FAILED")
    assert "a JSON body is required" in str(empty["detail"])


@pytest.mark.parametrize(
    ("content_type", "named"),
    [
        ("text/plain", "'text/plain'"),
        ("application/x-www-form-urlencoded", "x-www-form"),
        (None, "no Content-Type"),
    ],
)
async def test_a_body_that_is_not_json_says_so(
    api: httpx.AsyncClient, content_type: str | None, named: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    resp = await api.post(
        "/v1/runs", content=b'{"prompt": "x", "model": "scripted"}', headers=headers
    )
    problem = problem_of(resp, 400, "VALIDATION_FAILED")
    assert named in str(problem["detail"]) and "application/json" in str(problem["detail"])
    assert problem["errors"][0]["field"] == "Content-Type"
    # The same body as JSON is fine, and a POST without a body needs no Content-Type.
    ok = await api.post("/v1/runs", json={"prompt": "x", "model": "scripted"})
    assert ok.status_code == 201
    assert (await api.post(f"/v1/runs/{ok.json()['id']}/cancel")).status_code == 200
    charset = await api.post(
        "/v1/runs",
        content=b'{"prompt": "x", "model": "scripted"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert charset.status_code == 201
    await api.post(f"/v1/runs/{charset.json()['id']}/cancel")


async def test_unknown_query_parameters_on_lists(api: httpx.AsyncClient) -> None:
    problem = problem_of(await api.get("/v1/runs?model=x"), 400, "VALIDATION_FAILED")
    assert [e["field"] for e in problem["errors"]] == ["model"]
    assert "model" in str(problem["detail"]) and "status" in str(problem["detail"])
    typo = problem_of(await api.get("/v1/runs?staus=failed&limit=5"), 400, "VALIDATION_FAILED")
    assert [e["field"] for e in typo["errors"]] == ["staus"]
    for path in ("/v1/agents?colour=red", "/v1/webhooks?page=1&x=1"):
        problem_of(await api.get(path), 400, "VALIDATION_FAILED")
    ok = await api.get("/v1/runs", params={"status": "queued", "limit": 5, "page": 1})
    assert ok.status_code == 200
    thread = (await api.post("/v1/threads", json={})).json()
    problem_of(await api.get(f"/v1/threads/{thread['id']}/runs?z=1"), 400, "VALIDATION_FAILED")
    assert (await api.get(f"/v1/threads/{thread['id']}/runs?limit=3")).status_code == 200
    # Every list and filtered read: a typo was answered with the unfiltered list.
    run = (await api.post("/v1/runs", json={"prompt": "x", "model": "scripted"})).json()
    for path, fine in (
        ("/v1/templates?colour=red", "/v1/templates?limit=5"),
        ("/v1/usage?form=2026-01-01T00:00:00Z", "/v1/usage?from=2026-01-01T00:00:00Z"),
        (f"/v1/runs/{run['id']}/artifacts?x=1", f"/v1/runs/{run['id']}/artifacts?page=1"),
        (
            f"/v1/runs/{run['id']}/session-logs?evenTypes=run.created",
            f"/v1/runs/{run['id']}/session-logs?eventTypes=run.created",
        ),
        (f"/v1/runs/{run['id']}/events?after=0", f"/v1/runs/{run['id']}/events?after_seq=0"),
    ):
        json_only = {"Accept": "application/json"}
        typo = problem_of(await api.get(path, headers=json_only), 400, "VALIDATION_FAILED")
        assert typo["errors"][0]["code"] == "unknown_parameter", typo
        assert (await api.get(fine, headers=json_only)).status_code == 200, fine
    await api.post(f"/v1/runs/{run['id']}/cancel")


async def test_unknown_query_parameters_on_api_keys(stack: Stack, keys: Keys) -> None:
    key = await keys.make("org-query-admin", ["admin"])
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers) as admin:
        problem_of(await admin.get("/v1/api-keys?revoked=true"), 400, "VALIDATION_FAILED")
        assert (await admin.get("/v1/api-keys?limit=5")).status_code == 200
