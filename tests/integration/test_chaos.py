"""Faults: the worker SIGKILLed three times under 20 runs; every endpoint across tenants."""

from __future__ import annotations

import asyncio
import random
import subprocess

import httpx

from tests.conftest import Keys, script, wait_for
from tests.integration.counting_runs import assert_each_step_ran_once, start_counting_runs
from tests.stack import Stack


async def test_twenty_runs_survive_three_worker_kills(api: httpx.AsyncClient, stack: Stack) -> None:
    rng = random.Random(7)
    ids = await start_counting_runs(api, runs=20, steps=4, sleep=0.1)
    for _ in range(3):
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        stack.kill_worker(stack.workers[0])
        await asyncio.sleep(rng.uniform(0.1, 1.0))
        stack.start_worker()
    await assert_each_step_ran_once(api, stack, ids, steps=4)
    # No process of these runs' sandboxes is left (the sandbox id is in each one's argv;
    # other tests' sandboxes, and other stacks on this machine, may well be alive).
    for run_id in ids:
        sandbox = "sbx_" + run_id.removeprefix("run_")
        leftovers = subprocess.run(["pgrep", "-f", sandbox], capture_output=True, text=True)
        assert leftovers.stdout.strip() == "", (sandbox, leftovers.stdout)


async def test_every_endpoint_hides_other_tenants(
    api: httpx.AsyncClient, stack: Stack, keys: Keys
) -> None:
    run = (
        await api.post(
            "/v1/runs", json={"prompt": script({"ask": "?"}), "model": "scripted", "start": True}
        )
    ).json()
    await wait_for(api, run["id"], {"waiting_for_input"})
    thread = (await api.post("/v1/threads", json={})).json()
    agent = (await api.post("/v1/agents", json={"name": "a", "instructions": "i"})).json()
    hook = (await api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h"})).json()
    tpl = (await api.post("/v1/templates", json={"slug": "private", "size": "s"})).json()
    sch = (
        await api.post(
            "/v1/schedules",
            json={"spec": {"cron": ["0 9 * * 1-5"]}, "run": {"prompt": "x", "model": "scripted"}},
        )
    ).json()
    other = await keys.make("tenant-b")
    r, t, a, w, p = run["id"], thread["id"], agent["id"], hook["id"], tpl["slug"]
    calls = [
        ("GET", f"/v1/runs/{r}", None),
        ("GET", f"/v1/runs/{r}/status", None),
        ("POST", f"/v1/runs/{r}/exec", None),
        ("POST", f"/v1/runs/{r}/cancel", None),
        ("POST", f"/v1/runs/{r}/input", {"content": "x"}),
        ("POST", f"/v1/runs/{r}/command", {"jsonrpc": "2.0", "method": "cancel", "id": 1}),
        ("POST", f"/v1/runs/{r}/watch", {"callbackUrl": "http://127.0.0.1:9/w"}),
        ("GET", f"/v1/runs/{r}/events", None),
        ("GET", f"/v1/runs/{r}/logs", None),
        ("GET", f"/v1/runs/{r}/session-logs", None),
        ("GET", f"/v1/threads/{t}", None),
        ("GET", f"/v1/threads/{t}/runs", None),
        ("POST", f"/v1/threads/{t}/runs", {"prompt": "x", "model": "scripted"}),
        ("GET", f"/v1/agents/{a}", None),
        ("PATCH", f"/v1/agents/{a}", {"name": "stolen"}),
        ("DELETE", f"/v1/agents/{a}", None),
        ("GET", f"/v1/webhooks/{w}", None),
        ("PATCH", f"/v1/webhooks/{w}", {"enabled": False}),
        ("POST", f"/v1/webhooks/{w}/rotate-secret", None),
        ("GET", f"/v1/webhooks/{w}/deliveries", None),
        ("DELETE", f"/v1/webhooks/{w}", None),
        ("GET", f"/v1/templates/{p}", None),
        ("PATCH", f"/v1/templates/{p}", {"size": "xl"}),
        ("DELETE", f"/v1/templates/{p}", None),
        ("GET", f"/v1/schedules/{sch['id']}", None),
        ("PATCH", f"/v1/schedules/{sch['id']}", {"enabled": False}),
        ("POST", f"/v1/schedules/{sch['id']}/pause", {"note": "x"}),
        ("POST", f"/v1/schedules/{sch['id']}/unpause", None),
        ("POST", f"/v1/schedules/{sch['id']}/trigger", None),
        (
            "POST",
            f"/v1/schedules/{sch['id']}/backfill",
            {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-02T00:00:00Z"},
        ),
        ("DELETE", f"/v1/schedules/{sch['id']}", None),
    ]
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {other}"}
    ) as c:
        for method, url, body in calls:
            resp = await c.request(method, url, json=body)
            assert resp.status_code == 404, (method, url, resp.status_code, resp.text)
            assert resp.headers["content-type"] == "application/problem+json"
            for secret in (
                "whsec_",
                run["orgId"] if "orgId" in run else "org_",
                "waiting_for_input",
                '"ask"',
                "127.0.0.1:9",
                '"instructions"',
            ):
                assert secret not in resp.text, (method, url, secret, resp.text)
        for url in ("/v1/runs", "/v1/agents", "/v1/webhooks", "/v1/schedules"):
            listed = (await c.get(url)).json()["data"]
            assert listed == [], (url, listed)
        templates = (await c.get("/v1/templates")).json()["data"]
        assert [x["slug"] for x in templates] == ["default"], templates
        resp = await c.post("/v1/runs", json={"prompt": "x", "model": "scripted", "template": p})
        assert resp.status_code == 400 and resp.json()["type"] == "RUN_TEMPLATE_NOT_FOUND"
    # Nothing the other tenant did reached the owner's resources.
    assert (await api.get(f"/v1/runs/{r}")).json()["status"] == "waiting_for_input"
    assert (await api.get(f"/v1/agents/{a}")).json()["name"] == "a"
    assert (await api.get(f"/v1/webhooks/{w}")).json()["enabled"] is True
    assert (await api.get(f"/v1/templates/{p}")).json() == tpl
    mine = (await api.get(f"/v1/schedules/{sch['id']}")).json()
    assert mine["enabled"] is True and mine["paused"] is False and mine["recentRuns"] == []
    await api.delete(f"/v1/schedules/{sch['id']}")
    await api.post(f"/v1/runs/{r}/cancel")
