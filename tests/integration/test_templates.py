"""Templates: CRUD and its errors, what a run resolves from its template at create (size,
env, defaults, provider), the delete conflict, and the Postgres checks (NUL, slug race)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Keys, in_process_api, script, wait_for
from tests.integration.test_api_errors import assert_problem
from tests.stack import Stack

SIZE_S = {"cpuMillis": 1000, "memoryMi": 2048, "diskMi": 5120}
SIZE_L = {"cpuMillis": 4000, "memoryMi": 8192, "diskMi": 20480}


async def _events(api: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    resp = await api.get(f"/v1/runs/{run_id}/events", headers={"Accept": "application/json"})
    assert resp.status_code == 200, resp.text
    events: list[dict[str, Any]] = resp.json()
    return events


def _env_of(events: list[dict[str, Any]]) -> dict[str, str]:
    """The environment the sandbox printed for ``bash env``."""
    (result,) = [e["data"] for e in events if e["type"] == "tool.result"]
    assert result["isError"] is False, result
    return dict(line.split("=", 1) for line in result["output"].splitlines() if "=" in line)


async def test_template_crud(api: httpx.AsyncClient) -> None:
    listed = (await api.get("/v1/templates")).json()
    assert [(t["slug"], t["system"]) for t in listed["data"]] == [("default", True)]

    created = await api.post(
        "/v1/templates",
        json={
            "slug": "web-2",
            "name": "Web",
            "size": "l",
            "image": "node:22",
            "env": {"NODE_ENV": "test"},
            "setupScript": "npm ci",
            "defaults": {"model": "scripted", "maxTurns": 7},
        },
    )
    assert created.status_code == 201, created.text
    t = created.json()
    assert t["id"].startswith("tpl_") and t["object"] == "template" and t["system"] is False
    assert (t["slug"], t["name"], t["size"], t["resources"]) == ("web-2", "Web", "l", SIZE_L)
    assert (t["provider"], t["network"], t["image"], t["setupScript"]) == (
        "local",
        "none",
        "node:22",
        "npm ci",
    )
    assert t["env"] == {"NODE_ENV": "test"}
    assert t["defaults"] == {
        "model": "scripted",
        "maxTurns": 7,
        "maxCostUsd": None,
        "timeoutSeconds": None,
    }
    assert (await api.get("/v1/templates/web-2")).json() == t
    minimal = (await api.post("/v1/templates", json={"slug": "a"})).json()
    assert (minimal["name"], minimal["size"], minimal["env"]) == ("a", "m", {})

    page = (await api.get("/v1/templates", params={"limit": 2, "page": 2})).json()
    assert [x["slug"] for x in page["data"]] == ["web-2"]
    assert page["pagination"] == {"page": 2, "limit": 2, "total": 3, "totalPages": 2}

    patched = await api.patch(
        "/v1/templates/web-2",
        json={"size": "s", "env": {"B": "2"}, "image": None, "defaults": {"maxCostUsd": 0.5}},
    )
    assert patched.status_code == 200, patched.text
    p = patched.json()
    assert (p["size"], p["resources"], p["env"], p["image"]) == ("s", SIZE_S, {"B": "2"}, None)
    assert p["defaults"]["maxCostUsd"] == 0.5 and p["defaults"]["maxTurns"] is None
    assert p["name"] == "Web" and p["setupScript"] == "npm ci" and p["id"] == t["id"]
    assert (await api.patch("/v1/templates/web-2", json={"slug": "web-2"})).status_code == 200

    assert (await api.delete("/v1/templates/web-2")).status_code == 204
    assert_problem(await api.get("/v1/templates/web-2"), 404, "TEMPLATE_NOT_FOUND")
    resp = await api.post(
        "/v1/runs", json={"prompt": "x", "model": "scripted", "template": "web-2"}
    )
    assert_problem(resp, 400, "RUN_TEMPLATE_NOT_FOUND")


async def test_template_errors(api: httpx.AsyncClient) -> None:
    assert (await api.post("/v1/templates", json={"slug": "mine"})).status_code == 201
    for slug in ("mine", "default"):
        resp = await api.post("/v1/templates", json={"slug": slug})
        assert_problem(resp, 409, "TEMPLATE_SLUG_EXISTS")
    bad: list[dict[str, Any]] = [
        {},
        {"slug": ""},
        {"slug": "Upper"},
        {"slug": "under_score"},
        {"slug": "a" * 65},
        {"slug": "nul\x00"},
        {"slug": "ok", "size": "xxl"},
        {"slug": "ok", "provider": "docker"},
        {"slug": "ok", "network": "some"},
        {"slug": "ok", "name": ""},
        {"slug": "ok", "name": "a\x00b"},
        {"slug": "ok", "image": "img\x00"},
        {"slug": "ok", "setupScript": "echo \x00"},
        {"slug": "ok", "env": {"A": "x\x00y"}},
        {"slug": "ok", "env": {"1BAD": "x"}},
        {"slug": "ok", "env": {"A": 1}},
        {"slug": "ok", "defaults": {"maxTurns": 0}},
        {"slug": "ok", "defaults": {"maxTurns": 1001}},
        {"slug": "ok", "defaults": {"maxCostUsd": 0.001}},
        {"slug": "ok", "defaults": {"timeoutSeconds": 3601}},
        {"slug": "ok", "defaults": {"model": "gpt-5"}},
        {"slug": "ok", "defaults": {"model": "x\x00"}},
        {"slug": "ok", "defaults": {"temperature": 1}},
        {"slug": "ok", "extra": 1},
    ]
    for body in bad:
        resp = await api.post("/v1/templates", json=body)
        problem = assert_problem(resp, 400, "VALIDATION_FAILED")
        assert problem["errors"], body
    assert (await api.get("/v1/templates/ok")).status_code == 404  # none of them was created

    bad_patches: list[dict[str, Any]] = [
        {"slug": "other"},
        {"name": None},
        {"size": None},
        {"env": None},
        {"defaults": None},
        {"size": "xs"},
        {"env": {"K": "\x00"}},
        {"defaults": {"maxCostUsd": 5000}},
    ]
    for body in bad_patches:
        resp = await api.patch("/v1/templates/mine", json=body)
        assert_problem(resp, 400, "VALIDATION_FAILED")

    default = (await api.get("/v1/templates/default")).json()
    assert default["system"] is True and default["slug"] == "default"
    assert_problem(
        await api.patch("/v1/templates/default", json={"size": "xl"}),
        403,
        "TEMPLATE_SYSTEM_READONLY",
    )
    assert_problem(await api.delete("/v1/templates/default"), 403, "TEMPLATE_SYSTEM_READONLY")
    assert (await api.get("/v1/templates/default")).json() == default
    for method in ("GET", "PATCH", "DELETE"):
        for path in ("/v1/templates/nope", "/v1/templates/Bad_Slug"):
            resp = await api.request(method, path, json={} if method == "PATCH" else None)
            assert_problem(resp, 404, "TEMPLATE_NOT_FOUND")
        # A NUL anywhere in the URL is refused before any route sees it.
        resp = await api.request(
            method, "/v1/templates/%00", json={} if method == "PATCH" else None
        )
        assert_problem(resp, 400, "VALIDATION_FAILED")

    # Every slug the contract allows can be named by a run and an agent.
    assert (await api.post("/v1/templates", json={"slug": "-9-"})).status_code == 201
    run = await api.post("/v1/runs", json={"prompt": "x", "model": "scripted", "template": "-9-"})
    assert run.status_code == 201 and run.json()["template"] == "-9-", run.text
    await api.post(f"/v1/runs/{run.json()['id']}/cancel")
    agent = {"name": "a", "instructions": "i", "template": "-9-"}
    assert (await api.post("/v1/agents", json=agent)).status_code == 201


async def test_run_resolves_size_and_defaults_from_its_template(api: httpx.AsyncClient) -> None:
    await api.post(
        "/v1/templates",
        json={
            "slug": "tight",
            "size": "s",
            "defaults": {
                "model": "scripted",
                "maxTurns": 3,
                "maxCostUsd": 0.5,
                "timeoutSeconds": 120,
            },
        },
    )
    queued = (await api.post("/v1/runs", json={"prompt": "x", "template": "tight"})).json()
    assert queued["template"] == "tight" and queued["model"] == "scripted"
    assert queued["guardrails"] == {"maxTurns": 3, "maxCostUsd": 0.5, "timeoutSeconds": 120}
    assert queued["sandbox"] == {"id": None, "provider": "local", "size": "s", "resources": SIZE_S}

    own = {"model": "haiku", "maxTurns": 9, "maxCostUsd": 2.0, "timeoutSeconds": 60}
    overridden = (
        await api.post("/v1/runs", json={"prompt": "x", "template": "tight", **own})
    ).json()
    assert overridden["model"] == "haiku"
    assert overridden["guardrails"] == {k: v for k, v in own.items() if k != "model"}

    # A later change of the template leaves what the queued run resolved alone.
    await api.patch("/v1/templates/tight", json={"defaults": {"maxTurns": 50}})
    again = (await api.get(f"/v1/runs/{queued['id']}")).json()
    assert again["guardrails"]["maxTurns"] == 3 and again["model"] == "scripted"

    plain = (await api.post("/v1/runs", json={"prompt": "x", "model": "scripted"})).json()
    assert plain["template"] == "default" and plain["sandbox"]["size"] == "m"
    assert plain["guardrails"]["maxTurns"] == 100

    done = await api.post(
        "/v1/runs",
        json={"prompt": script({"text": "ok"}), "template": "tight", "start": True},
    )
    finished = await wait_for(api, done.json()["id"], {"completed"})
    assert finished["sandbox"]["id"].startswith("sbx_")
    assert (finished["sandbox"]["size"], finished["sandbox"]["resources"]) == ("s", SIZE_S)
    listed = (await api.get("/v1/runs", params={"template": "tight"})).json()["data"]
    assert {r["id"] for r in listed} == {queued["id"], overridden["id"], done.json()["id"]}
    for r in (queued, overridden, plain):
        await api.post(f"/v1/runs/{r['id']}/cancel")


async def test_template_env_under_the_runs_in_the_sandbox(api: httpx.AsyncClient) -> None:
    await api.post(
        "/v1/templates",
        json={"slug": "envy", "env": {"SHARED": "template", "ONLY_TEMPLATE": "t"}},
    )
    body = {
        "prompt": script({"tool": "bash", "input": {"command": "env"}}, {"text": "done"}),
        "model": "scripted",
        "template": "envy",
        "env": {"SHARED": "run", "ONLY_RUN": "r"},
    }
    started = (await api.post("/v1/runs", json={**body, "start": True})).json()
    queued = (await api.post("/v1/runs", json=body)).json()
    await wait_for(api, started["id"], {"completed"})
    env = _env_of(await _events(api, started["id"]))
    assert (env["SHARED"], env["ONLY_TEMPLATE"], env["ONLY_RUN"]) == ("run", "t", "r")

    # The queued run keeps the template's env as it was when the run was created.
    await api.patch("/v1/templates/envy", json={"env": {"ONLY_TEMPLATE": "changed"}})
    assert (await api.post(f"/v1/runs/{queued['id']}/exec")).status_code == 202
    await wait_for(api, queued["id"], {"completed"})
    env = _env_of(await _events(api, queued["id"]))
    assert (env["SHARED"], env["ONLY_TEMPLATE"], env["ONLY_RUN"]) == ("run", "t", "r")


async def test_delete_conflicts_with_queued_and_active_runs(api: httpx.AsyncClient) -> None:
    await api.post("/v1/templates", json={"slug": "busy", "defaults": {"model": "scripted"}})
    waiting = (
        await api.post(
            "/v1/runs",
            json={"prompt": script({"ask": "wait"}), "template": "busy", "start": True},
        )
    ).json()
    await wait_for(api, waiting["id"], {"waiting_for_input"})
    assert_problem(await api.delete("/v1/templates/busy"), 409, "TEMPLATE_HAS_RUNNING_SANDBOXES")
    await api.post(f"/v1/runs/{waiting['id']}/cancel")
    await wait_for(api, waiting["id"], {"cancelled"})

    queued = (await api.post("/v1/runs", json={"prompt": "x", "template": "busy"})).json()
    assert_problem(await api.delete("/v1/templates/busy"), 409, "TEMPLATE_HAS_RUNNING_SANDBOXES")
    await api.post(f"/v1/runs/{queued['id']}/cancel")
    await wait_for(api, queued["id"], {"cancelled"})
    assert (await api.delete("/v1/templates/busy")).status_code == 204


async def test_slugs_are_per_organization(api: httpx.AsyncClient, stack: Stack, keys: Keys) -> None:
    mine = (await api.post("/v1/templates", json={"slug": "shared", "size": "xl"})).json()
    other = await keys.make("tpl-other-" + secrets.token_hex(3))
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {other}"}
    ) as c:
        resp = await c.post(
            "/v1/runs", json={"prompt": "x", "model": "scripted", "template": "shared"}
        )
        assert_problem(resp, 400, "RUN_TEMPLATE_NOT_FOUND")
        theirs = await c.post("/v1/templates", json={"slug": "shared", "size": "s"})
        assert theirs.status_code == 201 and theirs.json()["id"] != mine["id"]
        assert (await c.get("/v1/templates/shared")).json()["size"] == "s"
    assert (await api.get("/v1/templates/shared")).json() == mine


async def test_e2b_template_needs_the_e2b_key(tmp_path: Path) -> None:
    for key, status, code in ((None, 400, "VALIDATION_FAILED"), ("e2b_test", 502, None)):
        async with in_process_api(tmp_path / str(status), "e2b", e2b_api_key=key) as c:
            created = await c.post("/v1/templates", json={"slug": "cloud", "provider": "e2b"})
            assert created.status_code == 201 and created.json()["provider"] == "e2b"
            resp = await c.post(
                "/v1/runs", json={"prompt": "x", "model": "scripted", "template": "cloud"}
            )
            if code is None:
                # Past validation: only the missing workflow engine stops this run.
                assert_problem(resp, status, "RUN_ORCHESTRATOR_ERROR")
            else:
                problem = assert_problem(resp, status, code)
                errors = problem["errors"]
                assert isinstance(errors, list) and len(errors) == 1
                assert (errors[0]["field"], errors[0]["code"]) == (
                    "template",
                    "provider_unavailable",
                )
                assert "E2B_API_KEY" in str(problem["detail"])


async def test_templates_on_postgres(pg_stack: Stack, postgres_url: str) -> None:
    from runyard.db.engine import Database

    db = Database(postgres_url)
    key = await Keys(db).make("pg-tpl-" + secrets.token_hex(3))
    await db.dispose()
    async with httpx.AsyncClient(
        base_url=pg_stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as c:
        for body in (
            {"slug": "pg", "name": "a\x00b"},
            {"slug": "pg", "env": {"A": "\x00"}},
            {"slug": "pg", "setupScript": "\x00"},
            {"slug": "pg", "defaults": {"model": "\x00"}},
        ):
            assert_problem(await c.post("/v1/templates", json=body), 400, "VALIDATION_FAILED")
        assert_problem(await c.get("/v1/templates/%00"), 400, "VALIDATION_FAILED")
        # Two creates of one slug at once: one wins, the other is told the slug exists.
        answers = await asyncio.gather(
            *(c.post("/v1/templates", json={"slug": "pg", "name": f"n{i}"}) for i in range(4))
        )
        assert sorted(r.status_code for r in answers) == [201, 409, 409, 409]
        for r in answers:
            if r.status_code == 409:
                assert_problem(r, 409, "TEMPLATE_SLUG_EXISTS")
        patched = await c.patch("/v1/templates/pg", json={"env": {"K": "v"}})
        assert patched.status_code == 200 and patched.json()["env"] == {"K": "v"}
        listed = (await c.get("/v1/templates")).json()["data"]
        assert [t["slug"] for t in listed] == ["default", "pg"]
