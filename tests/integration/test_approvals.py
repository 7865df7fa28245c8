"""Tool-call approvals over HTTP: a policy on the run, the run waiting with its pending
approvals, decisions (edit, deny by rule, deny by a person through JSON-RPC with a
connection token), the errors, and what the model is told of each call."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
import pexpect

from runyard.client import AsyncRunyard
from tests.conftest import TERMINAL, Keys, script, wait_for
from tests.fakes.anthropic_server import FakeAnthropic, Reply
from tests.integration.test_accounts import client
from tests.integration.test_api_errors import assert_problem
from tests.integration.test_cli import runyard
from tests.integration.test_cli_client import spawn
from tests.integration.test_events import full_log
from tests.stack import Stack

POLICY = {
    "rules": [{"tool": "bash", "match": {"command": "rm "}, "action": "deny"}],
    "default": "ask",
}


async def pending(api: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    run = await wait_for(api, run_id, {"waiting_for_input"})
    assert run["waitingFor"] == "approval", run
    (approval,) = run["pendingApprovals"]
    return dict(approval)


async def test_decisions_over_http(api: httpx.AsyncClient, stack: Stack) -> None:
    bad = {**POLICY, "rules": [{"tool": "bash", "match": {"command": "("}, "action": "ask"}]}
    refused = await api.post(
        "/v1/runs", json={"prompt": "x", "model": "scripted", "approvals": bad}
    )
    assert_problem(refused, 400, "VALIDATION_FAILED")
    body = {
        "prompt": script(
            {"tool": "bash", "input": {"command": "echo one"}},
            {"tool": "bash", "input": {"command": "rm -rf nothing"}},
            {"tool": "bash", "input": {"command": "echo three"}},
            {"text": "done"},
        ),
        "model": "scripted",
        "start": True,
        "approvals": POLICY,
    }
    run_id = (await api.post("/v1/runs", json=body)).json()["id"]
    first = await pending(api, run_id)
    assert first["tool"] == "bash" and first["input"] == {"command": "echo one"}
    assert first["status"] == "pending" and first["id"].startswith("apr_")
    listed = (await api.get(f"/v1/runs/{run_id}/approvals", params={"status": "pending"})).json()
    assert [a["id"] for a in listed["data"]] == [first["id"]] and listed["pagination"]["total"] == 1
    url = f"/v1/runs/{run_id}/approvals/{first['id']}"
    answer = await api.post(f"/v1/runs/{run_id}/input", json={"content": "yes"})
    assert_problem(answer, 409, "RUN_NOT_WAITING_FOR_INPUT")
    assert_problem(
        await api.post(url, json={"decision": "edit", "input": {}}), 400, "VALIDATION_FAILED"
    )
    for nope in ("apr_nope", "apr_" + "x" * 300):
        assert_problem(
            await api.post(f"/v1/runs/{run_id}/approvals/{nope}", json={"decision": "approve"}),
            404,
            "APPROVAL_NOT_FOUND",
        )
    edit = {"decision": "edit", "input": {"command": "echo edited"}}
    decided = await api.post(url, json=edit, headers={"Idempotency-Key": "k1"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "edited" and decided.json()["decidedBy"].startswith("key_")
    again = await api.post(url, json=edit)  # the same decision again
    assert again.status_code == 200 and again.json()["decidedAt"] == decided.json()["decidedAt"]
    assert_problem(await api.post(url, json={"decision": "deny"}), 409, "APPROVAL_ALREADY_DECIDED")

    # The rm is denied by the rule without asking; the third call waits, and a
    # connection token denies it through JSON-RPC with a message.
    third = await pending(api, run_id)
    token = (await api.get(f"/v1/runs/{run_id}/connection-token")).json()["token"]
    async with client(stack, token) as tok:
        rpc = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "deny",
            "params": {"id": third["id"], "message": "not on Fridays"},
        }
        resp = await tok.post(f"/v1/runs/{run_id}/command", json=rpc)
    assert resp.status_code == 200, resp.text
    (denied,) = resp.json()["result"]["data"]
    assert denied["status"] == "denied" and denied["decidedBy"] == "token"
    done = await wait_for(api, run_id, TERMINAL)
    assert done["status"] == "completed" and "waitingFor" not in done

    log = await full_log(api, run_id)
    results = [e["data"] for e in log if e["type"] == "tool.result"]
    assert "stdout:\nedited" in results[0]["output"] and not results[0]["isError"]
    assert "A person edited this call" in results[0]["output"]
    assert results[1]["isError"] and "policy" in results[1]["output"]
    assert results[2]["isError"] and "not on Fridays" in results[2]["output"]
    assert len(results) == 3  # exactly one result per tool_use
    kinds = [e["type"] for e in log if e["type"].startswith("approval.")]
    assert kinds == ["approval.requested", "approval.resolved"] * 2
    resolved = [e["data"] for e in log if e["type"] == "approval.resolved"]
    assert [r["decision"] for r in resolved] == ["edit", "deny"]


async def test_parallel_calls_and_cancel(
    api: httpx.AsyncClient, fake_anthropic: FakeAnthropic, stack: Stack
) -> None:
    """Two calls of one turn: both wait; a batch approves one and denies the other (the
    model reads the person's message); the next turn's call is cancelled with the run."""
    fake_anthropic.reset()
    calls = [
        {"tool_use": {"id": "toolu_a", "name": "bash", "input": {"command": "echo a"}}},
        {"tool_use": {"id": "toolu_b", "name": "bash", "input": {"command": "echo b"}}},
    ]
    later = {"tool_use": {"id": "toolu_c", "name": "bash", "input": {"command": "echo c"}}}
    fake_anthropic.queue(Reply(blocks=calls), Reply(blocks=[later]))
    slug = "asks-" + secrets.token_hex(3)  # the template's policy: every call asks
    unknown_tool = {"rules": [{"tool": "sudo", "action": "ask"}]}
    refused = await api.post("/v1/templates", json={"slug": slug, "approvals": unknown_tool})
    assert_problem(refused, 400, "VALIDATION_FAILED")
    made = await api.post("/v1/templates", json={"slug": slug, "approvals": {"default": "ask"}})
    assert made.status_code == 201 and made.json()["approvals"]["default"] == "ask", made.text
    body = {"prompt": "go", "model": "sonnet", "start": True, "template": slug}
    run_id = (await api.post("/v1/runs", json=body)).json()["id"]
    run = await wait_for(api, run_id, {"waiting_for_input"})
    a, b = run["pendingApprovals"]
    batch = {
        "decisions": [
            {"id": a["id"], "decision": "approve"},
            {"id": b["id"], "decision": "deny", "message": "use printf"},
        ]
    }
    stale = {"decisions": [*batch["decisions"], {"id": "apr_gone", "decision": "approve"}]}
    assert_problem(
        await api.post(f"/v1/runs/{run_id}/approvals", json=stale), 404, "APPROVAL_NOT_FOUND"
    )
    key = api.headers["authorization"].removeprefix("Bearer ")
    async with AsyncRunyard(stack.api_url, key) as ry:  # the Python client's batch
        assert [a.id for a in (await ry.approvals(run_id, status="pending")).data] == [
            a["id"],
            b["id"],
        ]
        decided = await ry.decide(run_id, batch["decisions"])
    assert [x.status for x in decided] == ["approved", "denied"]
    assert decided[1].message == "use printf" and (decided[1].decided_by or "").startswith("key_")
    c = await pending(api, run_id)
    assert c["toolCallId"] == "toolu_c"
    token = (await api.get(f"/v1/runs/{run_id}/connection-token")).json()["token"]
    async with client(stack, token) as tok:  # a token lists the run's approvals
        seen = (await tok.get(f"/v1/runs/{run_id}/approvals", params={"status": "pending"})).json()
    assert [x["id"] for x in seen["data"]] == [c["id"]]
    assert (await api.post(f"/v1/runs/{run_id}/cancel")).status_code == 200
    done = await wait_for(api, run_id, TERMINAL)
    assert done["status"] == "cancelled"
    gone = (await api.get(f"/v1/runs/{run_id}/approvals", params={"status": "cancelled"})).json()
    assert [x["id"] for x in gone["data"]] == [c["id"]]
    late = await api.post(f"/v1/runs/{run_id}/approvals/{c['id']}", json={"decision": "approve"})
    assert_problem(late, 409, "APPROVAL_NOT_PENDING")
    results = {
        block["tool_use_id"]: block
        for block in fake_anthropic.requests[1]["messages"][-1]["content"]
        if block["type"] == "tool_result"
    }
    assert not results["toolu_a"].get("is_error") and "a" in str(results["toolu_a"]["content"])
    assert results["toolu_b"]["is_error"] and "use printf" in str(results["toolu_b"]["content"])
    log = await full_log(api, run_id)
    assert [e["data"]["toolCallId"] for e in log if e["type"] == "tool.result"] == [
        "toolu_b",
        "toolu_a",
        "toolu_c",
    ]


async def test_the_cli_prompts_and_decides(stack: Stack, keys: Keys) -> None:
    """``runyard follow`` in a terminal: edit one call, deny the next with a message;
    ``runyard approve`` approves what waits."""
    key = await keys.make("cli-approvals")
    body = {
        "prompt": script(
            {"tool": "bash", "input": {"command": "echo one"}},
            {"tool": "bash", "input": {"command": "echo two"}},
            {"tool": "bash", "input": {"command": "echo three"}},
            {"text": "all done"},
        ),
        "model": "scripted",
        "start": True,
        "approvals": {"default": "ask"},
    }
    async with client(stack, key) as api:
        run_id = (await api.post("/v1/runs", json=body)).json()["id"]
        child = spawn(stack, key, "follow", run_id)
        child.expect("waits for approval")
        child.expect("edit")
        child.sendline("e")
        child.expect("JSON")
        child.sendline('{"command": "echo edited"}')
        child.expect("edited")
        child.expect("waits for approval")
        child.expect("edit")
        child.sendline("d")
        child.expect("message")
        child.sendline("not today")
        child.expect("waits for approval")
        child.expect("edit")
        # Decided elsewhere while the prompt waits: the follow notices and goes on.
        out = runyard(stack, "approve", run_id, key=key)
        assert out.returncode == 0, out.stderr
        assert re.fullmatch(r"apr_\w+ approved bash \{\"command\": \"echo three\"\}\n", out.stdout)
        child.expect("decided elsewhere")
        child.expect("all done")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        none_left = runyard(stack, "approve", run_id, "--deny", key=key)
        assert none_left.returncode == 1 and "no tool call waiting" in none_left.stderr
        log = await full_log(api, run_id)
    results = [e["data"] for e in log if e["type"] == "tool.result"]
    assert "stdout:\nedited" in results[0]["output"]
    assert results[1]["isError"] and "not today" in results[1]["output"]
    assert "three" in results[2]["output"] and not results[2]["isError"]
