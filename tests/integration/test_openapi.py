"""The OpenAPI document the API serves: a valid document in which every operation has a
typed answer and declares its errors as problem+json (never FastAPI's 422), and from
which a real generator, openapi-python-client, makes a typed client that imports, parses
a run object and reads the API's problem documents."""

from __future__ import annotations

import importlib
import json
import re
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

import httpx
import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate

from api.app import create_app
from runyard.run_model import RUN_EXAMPLE
from runyard.settings import Settings
from tests.conftest import Keys
from tests.stack import Stack

PROBLEM = "application/problem+json"
# API.md "The run object" and "Endpoints".
RUN_FIELDS = {
    "id", "object", "status", "prompt", "guidance", "repo", "template", "agentId",
    "threadId", "model", "guardrails", "sandbox", "outputs", "usage", "failReason", "error",
    "metadata", "workflowId", "createdAt", "startedAt", "completedAt", "failedAt",
    "cancelledAt", "durationMs",
}  # fmt: skip
USAGE_FIELDS = {
    "turns", "inputTokens", "outputTokens", "cacheReadTokens", "cacheWriteTokens",
    "cacheHitRate", "costUsd", "creditsUsed",
}  # fmt: skip
# Operations whose success is not JSON, and errors that are not problem documents.
NOT_JSON = {"run_logs", "download", "checkpoint_diff"}
NOT_PROBLEMS = {("command", "400"), ("healthz", "503")}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("openapi")))


@pytest.fixture
async def served(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://runyard") as http:
        got = await http.get("/openapi.json")
    assert got.status_code == 200
    yield got.json()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            yield path, method, op


async def test_document_is_valid_typed_and_answers_problems(served: dict[str, Any]) -> None:
    validate(served)
    assert "HTTPValidationError" not in json.dumps(served)
    schemas = served["components"]["schemas"]
    for path, method, op in operations(served):
        name, responses = op["operationId"], op["responses"]
        ok = [s for s in responses if s.startswith("2")]
        assert ok, (method, path)
        for status in ok:
            content = responses[status].get("content", {})
            if status == "204":
                assert not content, (name, status)
            elif name not in NOT_JSON:
                schema = content["application/json"]["schema"]
                assert schema.get("$ref") or schema.get("items", {}).get("$ref"), (name, schema)
        for status, response in responses.items():
            if status[0] in "45" and (name, status) not in NOT_PROBLEMS:
                content = response["content"]
                assert list(content) == [PROBLEM], (name, status, content)
                assert content[PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}
                example = content[PROBLEM]["example"]
                assert example["status"] == int(status) and example["title"], (name, example)
                assert example["instance"] == path, (name, example)
                assert example["title"] != example["type"], example  # plain English
        if path.startswith("/v1/") and name != "download":  # behind an API key
            assert {"401", "403", "429"} <= set(responses), name
            assert "Retry-After" in responses["429"]["headers"], name
        # The bearer scheme is declared (api/deps.py declare_bearer) on exactly the
        # operations that authenticate, which are those that can answer 401.
        assert (op.get("security") == [{"HTTPBearer": []}]) == ("401" in responses), name
        if op.get("requestBody") or op.get("parameters"):
            assert "422" not in responses or name in {
                "create_run",
                "create_thread_run",
                "watch_run",
                "create_webhook",
                "patch_webhook",
                "create_schedule",  # the run body's callbackUrl or repo
                "patch_schedule",
            }, name
    assert RUN_FIELDS <= set(schemas["Run"]["properties"])
    assert USAGE_FIELDS == set(schemas["Usage"]["properties"])
    assert schemas["Run"]["properties"]["status"] == {"$ref": "#/components/schemas/RunStatus"}
    assert set(schemas["RunStatusView"]["properties"]) == {
        "id",
        "status",
        "failReason",
        "durationMs",
        "usage",
    }
    assert set(schemas["ExecAccepted"]["properties"]) == {"id", "status", "workflowId", "message"}
    assert {"type", "title", "status", "detail", "instance", "requestId", "errors"} == set(
        schemas["Problem"]["properties"]
    )
    by_id = {op["operationId"]: op for _, _, op in operations(served)}
    assert set(by_id["exec_run"]["responses"]) >= {"202", "402", "404", "409", "502"}
    assert by_id["exec_run"]["responses"]["409"]["content"][PROBLEM]["example"]["type"] == (
        "RUN_ALREADY_STARTED"
    )
    assert set(by_id["get_run"]["responses"]) == {"200", "401", "403", "404", "429"}
    assert served["components"]["securitySchemes"] == {
        "HTTPBearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "API key",
            "description": "An API key: `Authorization: Bearer …` (or a run's connection token)",
        }
    }


def documented_config() -> str:
    """The generator's configuration as docs/api.md gives it to users."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    found = re.search(r"`openapi-python-client\.yaml`:\n\n```yaml\n(.*?)```", text, re.S)
    assert found, "docs/api.md shows no configuration for openapi-python-client"
    return found[1]


def _generate(doc: dict[str, Any], where: Path) -> ModuleType:
    spec, config = where / "openapi.json", where / "config.yaml"
    spec.write_text(json.dumps(doc))
    # The documented configuration, and no formatter run after generation (nothing to
    # install, nothing to wait for).
    config.write_text(
        documented_config() + "post_hooks: []\npackage_name_override: runyard_api_client\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(spec),
            "--config",
            str(config),
            "--meta",
            "none",
            "--output-path",
            str(where / "runyard_api_client"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # A warning means a piece of the API is missing from the client.
    said = out.stdout + out.stderr
    assert "Warning" not in said and "WARNING" not in said, said
    sys.path.insert(0, str(where))
    try:
        return importlib.import_module("runyard_api_client")
    finally:
        sys.path.remove(str(where))


async def test_generated_client_is_typed(
    served: dict[str, Any], app: FastAPI, tmp_path: Path
) -> None:
    client_pkg = _generate(served, tmp_path)
    models = importlib.import_module("runyard_api_client.models")
    # Each operation's function answers its model, or the Problem of an error status.
    for operation, model in (
        ("runs.create_run", "Run"),
        ("runs.get_run", "Run"),
        ("runs.list_runs", "RunPage"),
        ("runs.get_status", "RunStatusView"),
        ("runs.exec_run", "ExecAccepted"),
        ("runs.cancel_run", "CancelResult"),
        ("runs.submit_input", "InputAccepted"),
        ("events.session_logs", "list"),
        ("threads.create_thread_run", "ThreadRunCreated"),
        ("usage.get_usage", "UsageReport"),
        ("templates.list_templates", "TemplatePage"),
        ("webhooks.create_webhook", "WebhookWithSecret"),
        # Bytes, not a str: the JSON-lines log (as the documented configuration has it
        # read) and an artifact's download.
        ("events.run_logs", "File"),
        ("artifacts.download", "File"),
    ):
        module = importlib.import_module(f"runyard_api_client.api.{operation}")
        for function in ("sync", "sync_detailed", "asyncio", "asyncio_detailed"):
            assert callable(getattr(module, function)), (operation, function)
        answers = {
            getattr(t, "__name__", str(t)) for t in get_args(module.sync.__annotations__["return"])
        }
        assert {model, "Problem"} <= answers, (operation, answers)
    create = importlib.import_module("runyard_api_client.api.runs.create_run")
    get_run = importlib.import_module("runyard_api_client.api.runs.get_run")
    assert create.sync.__annotations__["body"] is models.CreateRun

    # The run object of API.md, parsed into the generated models and written back.
    run = models.Run.from_dict(RUN_EXAMPLE)
    assert run.status == models.RunStatus.COMPLETED
    assert isinstance(run.usage, models.Usage) and run.usage.cache_read_tokens == 400
    assert run.created_at.year == 2026 and run.guardrails.max_cost_usd == 5
    written = json.dumps(run.to_dict()).replace('+00:00"', 'Z"')  # the same instant
    assert json.loads(written) == RUN_EXAMPLE

    # Against the app itself: no key is a 401 problem, parsed into the Problem model.
    http = client_pkg.Client(
        base_url="http://runyard", httpx_args={"transport": httpx.ASGITransport(app=app)}
    )
    async with app.router.lifespan_context(app):  # its store: SQLite in a temporary dir
        answer = await get_run.asyncio_detailed(client=http, run_id="run_nope")
    assert answer.status_code == 401
    assert isinstance(answer.parsed, models.Problem)
    assert answer.parsed.type_ == "AUTH_UNAUTHORIZED"
    assert answer.parsed.title == "Authentication required"


# GET operations answering a JSON array are event cursors (``after_seq``/``after`` and a
# ``limit`` up to 10,000, API.md "Events"), not pages.
EVENT_CURSORS = {"run_events", "session_logs"}
# Every list of API.md, so that the search below cannot quietly find none of them.
KNOWN_LISTS = {
    "list_runs",
    "list_templates",
    "list_agents",
    "list_thread_runs",
    "list_webhooks",
    "list_deliveries",
    "list_api_keys",
    "list_artifacts",
    "list_run_messages",
    "list_schedules",
    "list_checkpoints",
    "list_approvals",
}


def list_operations(doc: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every GET answering a list: an object with a ``data`` array, or a bare array."""
    schemas = doc["components"]["schemas"]
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for path, method, op in operations(doc):
        if method != "get" or op["operationId"] in NOT_JSON:
            continue
        schema = op["responses"]["200"]["content"]["application/json"]["schema"]
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
        data = schema.get("properties", {}).get("data", {})
        if schema.get("type") == "array" or data.get("type") == "array":
            found[op["operationId"]] = (path, op)
    return found


async def test_every_list_takes_page_and_limit(
    served: dict[str, Any], stack: Stack, keys: Keys
) -> None:
    """API.md "Pagination", for every list in the document, against the live API."""
    lists = list_operations(served)
    assert set(lists) == KNOWN_LISTS | EVENT_CURSORS, set(lists) ^ (KNOWN_LISTS | EVENT_CURSORS)
    key = await keys.make("org-" + secrets.token_hex(4), ["admin"])
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as api:
        run = (await api.post("/v1/runs", json={"prompt": "p", "model": "scripted"})).json()
        thread = (await api.post("/v1/threads", json={})).json()
        hook = (await api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h"})).json()
        ids = {"run_id": run["id"], "thread_id": thread["id"], "webhook_id": hook["id"]}
        for name in sorted(KNOWN_LISTS):
            path, op = lists[name]
            params = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "query"}
            assert params["page"]["schema"]["minimum"] == 1, name
            assert params["limit"]["schema"]["maximum"] == 100, name
            assert params["limit"]["schema"]["default"] == 20, name
            url = path.format(**ids)
            got = await api.get(url, params={"page": 1, "limit": 100})
            assert got.status_code == 200, (name, got.text)
            body = got.json()
            assert set(body) == {"data", "pagination"}, (name, body)
            pagination = body["pagination"]
            assert set(pagination) == {"page", "limit", "total", "totalPages"}, name
            assert (pagination["page"], pagination["limit"]) == (1, 100), name
            assert len(body["data"]) == min(pagination["total"], 100), name
            page2 = (await api.get(url, params={"page": 2, "limit": 1})).json()["pagination"]
            assert (page2["page"], page2["limit"]) == (2, 1), name
            for bad in ({"limit": 101}, {"limit": 0}, {"page": 0}):
                refused = await api.get(url, params=bad)
                assert refused.status_code == 400, (name, bad, refused.text)
                assert refused.json()["type"] == "VALIDATION_FAILED", (name, refused.text)
        await api.post(f"/v1/runs/{run['id']}/cancel")


async def test_docs_pages_need_nothing_but_the_api(stack: Any) -> None:
    """/docs and /redoc work offline: every script, style, icon and document they name is
    on the API's own origin, and answers there (they were blank without internet)."""
    import re
    from urllib.parse import urljoin, urlsplit

    origin = urlsplit(stack.api_url)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        for page in ("/docs", "/redoc"):
            got = await http.get(page)
            assert got.status_code == 200 and got.headers["content-type"].startswith("text/html")
            # Anything a browser would load: src/href attributes, url/…Url settings, and
            # any absolute URL at all in the page.
            named = re.findall(r"""(?:src|href|url|Url)\s*[:=]\s*["']([^"']+)["']""", got.text)
            assert len(named) >= 3, got.text
            assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", got.text), got.text
            for ref in named:
                url = urlsplit(urljoin(f"{stack.api_url}{page}", ref))
                assert (url.scheme, url.netloc) == (origin.scheme, origin.netloc), (page, ref)
                asset = await http.get(url.path)
                assert asset.status_code == 200, (page, ref, asset.status_code)
                assert asset.content, (page, ref)
