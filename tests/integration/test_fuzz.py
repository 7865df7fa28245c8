"""Fuzz every endpoint from the API's own OpenAPI document with schemathesis.

The running stack (API, worker, Temporal) gets schema-valid and schema-invalid requests,
authenticated as an organization that owns one of each object. Path ids are sometimes
swapped for those real ids, so the fuzzer reaches past the 404s. Whatever it sends: never
a 5xx, and every error is an RFC 9457 problem document. Examples per operation are
bounded by RUNYARD_FUZZ_EXAMPLES (default 25) so the suite stays fast.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

from api.app import create_app
from runyard.settings import Settings
from tests.conftest import Keys, script, wait_for
from tests.stack import Stack

EXAMPLES = int(os.environ.get("RUNYARD_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="session")
async def fuzz_org(stack: Stack, keys: Keys, receiver: Any) -> dict[str, str]:
    """An organization's key and the ids of a completed run, a thread, an agent, a webhook,
    and a template's slug."""
    key = await keys.make("fuzz-org", ["runs:read", "runs:write", "admin"])
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as api:
        hook = await api.post("/v1/webhooks", json={"url": receiver.url("/fuzz")})
        assert hook.status_code == 201, hook.text
        thread = await api.post("/v1/threads", json={})
        assert thread.status_code == 201, thread.text
        agent = await api.post("/v1/agents", json={"name": "fuzz", "instructions": "x"})
        assert agent.status_code == 201, agent.text
        template = await api.post("/v1/templates", json={"slug": "fuzz", "env": {"A": "b"}})
        assert template.status_code == 201, template.text
        body = {"prompt": script({"text": "done"}), "model": "scripted", "start": True}
        run = await api.post(f"/v1/threads/{thread.json()['id']}/runs", json=body)
        assert run.status_code == 201, run.text
        await wait_for(api, run.json()["runId"], {"completed"})
    return {
        "key": key,
        "run_id": run.json()["runId"],
        "thread_id": thread.json()["id"],
        "agent_id": agent.json()["id"],
        "webhook_id": hook.json()["id"],
        "slug": template.json()["slug"],
    }


# The document the API serves at /openapi.json, built from the same app; loading it at
# import time keeps the tests parametrized per operation. (schemathesis's lazy
# from_fixture loader does not work with pytest 9.)
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_fuzz_no_5xx_and_problem_documents(
    case: Any, stack: Stack, fuzz_org: dict[str, str]
) -> None:
    for name, value in list((case.path_parameters or {}).items()):
        # Half the generated ids (by their own length, so replays are deterministic)
        # become the organization's real object of that kind. The real run is complete,
        # so its event stream replays and closes instead of waiting for more.
        if name in fuzz_org and isinstance(value, str) and len(value) % 2 == 0:
            case.path_parameters[name] = fuzz_org[name]
    response = case.call(
        base_url=stack.api_url,
        headers={"Authorization": f"Bearer {fuzz_org['key']}"},
        timeout=30,
    )
    case.validate_response(response, checks=[not_a_server_error])
    if case.path == "/v1/schedules" and case.method == "POST" and response.status_code == 201:
        # A schedule the fuzzer made would fire for the rest of the session: not kept.
        httpx.delete(
            f"{stack.api_url}/v1/schedules/{response.json()['id']}",
            headers={"Authorization": f"Bearer {fuzz_org['key']}"},
            timeout=30,
        ).raise_for_status()
    if case.path.endswith("/command") and response.headers.get("content-type") == [
        "application/json"
    ]:
        # Past auth and the run lookup, the JSON-RPC endpoint answers in JSON-RPC
        # (API.md): an error object with a standard code, never a stack trace.
        body = response.json()
        assert body["jsonrpc"] == "2.0" and "id" in body, body
        if "error" in body:
            assert body["error"]["code"] in (-32700, -32600, -32601, -32602, -32603, -32000), body
            assert body["error"]["message"], body
        return
    if response.status_code >= 400:
        what = f"{case.method} {case.formatted_path} → {response.status_code}: {response.text}"
        assert response.headers.get("content-type") == ["application/problem+json"], what
        problem = response.json()
        assert problem["status"] == response.status_code, what
        assert problem["type"] and problem["title"] and problem["detail"], what
