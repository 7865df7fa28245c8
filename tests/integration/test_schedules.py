"""Scheduled runs end to end: a real Temporal Schedule, the worker's fire workflow and
the run service. Real time would make an interval schedule (at least 60 s) far too slow
for the suite, so its fires are made to happen now: a backfill of a window holding two
of its interval's times (the same action Temporal takes when the interval comes round),
and a trigger. Then a pause, and a skipped fire at the active-run cap, announced by the
organization's webhook.

The API here has an active-run cap of 1 and allows one schedule per organization (its
own process on the stack's store and workers: the cap travels with the schedule's
fires, as it does with a run)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from runyard.client import AsyncRunyard, RunyardAPIError
from runyard.db.engine import Database
from tests.conftest import Keys, async_db_url, in_process_api, poll_until, script, wait_for
from tests.fakes.receiver import Receiver
from tests.integration.test_cli import runyard
from tests.stack import Stack

QUICK = script({"text": "done"})
HOLD = script({"ask": "hold on"}, {"text": "done"})  # waits for input: stays active


@pytest.fixture
async def capped(stack: Stack, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    env = {"RUNYARD_MAX_ACTIVE_RUNS": "1", "RUNYARD_MAX_SCHEDULES_PER_ORG": "1"}
    api = Stack({**stack.env, **env}, tmp_path / "logs")
    api.start_api()
    db = Database(async_db_url(stack.env))
    key = await Keys(db).make("sch-" + secrets.token_hex(4))
    await db.dispose()
    try:
        async with httpx.AsyncClient(
            base_url=api.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as client:
            yield client
    finally:
        api.stop()


async def runs_of(client: httpx.AsyncClient, schedule_id: str) -> list[dict[str, object]]:
    answer = await client.get("/v1/runs", params={"scheduleId": schedule_id})
    data: list[dict[str, object]] = answer.json()["data"]
    return data


async def test_a_schedule_fires_triggers_pauses_and_skips_at_the_cap(
    capped: httpx.AsyncClient, receiver: Receiver, stack: Stack
) -> None:
    client = capped
    hook = "sch-" + secrets.token_hex(4)
    made = await client.post(
        "/v1/webhooks",
        json={
            "url": receiver.url(hook),
            "events": ["schedule.fired", "schedule.skipped", "schedule.paused"],
        },
    )
    assert made.status_code == 201, made.text
    # Leap days: a schedule that fires on its own during the test (one every minute did,
    # when the test crossed a minute) would add runs and webhooks the test does not expect.
    body = {
        "name": "leap days",
        "spec": {"cron": ["0 0 29 2 *"]},
        "run": {"prompt": QUICK, "model": "scripted"},
        "overlap": "buffer_all",
        "metadata": {"team": "infra"},
    }
    created = await client.post("/v1/schedules", json=body)
    assert created.status_code == 201, created.text
    sch = created.json()
    assert sch["id"].startswith("sch_") and sch["paused"] is False
    assert len(sch["upcoming"]) == 5 and sch["nextRunAt"] == sch["upcoming"][0]
    assert sch["remainingRuns"] is None and sch["recentRuns"] == []
    sid = sch["id"]

    # Two of the spec's past times, fired now.
    window = {"startAt": "2020-02-28T00:00:00Z", "endAt": "2024-03-01T00:00:00Z"}
    filled = await client.post(f"/v1/schedules/{sid}/backfill", json=window)
    assert filled.status_code == 202, filled.text
    assert filled.json()["fires"] == 2
    expected = {"2020-02-29T00:00:00Z", "2024-02-29T00:00:00Z"}

    async def two_completed() -> bool:
        runs = await runs_of(client, sid)
        return len(runs) == 2 and all(r["status"] == "completed" for r in runs)

    await poll_until(two_completed, "two scheduled runs completing", timeout=30, every=0.2)
    runs = await runs_of(client, sid)
    assert {r["scheduledAt"] for r in runs} == expected
    assert {r["scheduleId"] for r in runs} == {sid}

    # The same window again: the same two times, so no new run (one per scheduled time).
    temporal = await Client.connect(stack.env["TEMPORAL_ADDRESS"])
    schedule = temporal.get_schedule_handle(sid)
    again = await client.post(f"/v1/schedules/{sid}/backfill", json=window)
    assert again.status_code == 202 and again.json()["fires"] == 2

    async def refired() -> bool:
        info = (await schedule.describe()).info
        return len(info.recent_actions) == 4 and not info.running_actions

    await poll_until(refired, "the second backfill's fires ending", timeout=30, every=0.2)
    assert len(await runs_of(client, sid)) == 2

    # A trigger: 202 with the run it made.
    fired = await client.post(f"/v1/schedules/{sid}/trigger")
    assert fired.status_code == 202, fired.text
    run_id = fired.json()["runId"]
    assert (await wait_for(client, run_id, {"completed"}))["scheduleId"] == sid

    # A pause, with its note; nothing is upcoming while paused.
    paused = await client.post(f"/v1/schedules/{sid}/pause", json={"note": "release freeze"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True and paused.json()["upcoming"] == []
    assert paused.json()["notes"][-1]["note"] == "release freeze"
    unpaused = (await client.post(f"/v1/schedules/{sid}/unpause")).json()
    assert unpaused["paused"] is False and len(unpaused["upcoming"]) == 5

    # At the cap (1), held by a scheduled run: the next fire is skipped, recorded and
    # announced, and leaves no run behind.
    hold = {"run": {"prompt": HOLD, "model": "scripted"}}
    patched = await client.patch(f"/v1/schedules/{sid}", json=hold)
    assert patched.status_code == 200 and patched.json()["run"]["prompt"] == HOLD
    held_resp = await client.post(f"/v1/schedules/{sid}/trigger")
    assert held_resp.status_code == 202, held_resp.text
    held = held_resp.json()["runId"]
    await wait_for(client, held, {"waiting_for_input"})
    skipped = await client.post(f"/v1/schedules/{sid}/trigger")
    assert skipped.status_code == 429, skipped.text
    assert skipped.json()["type"] == "CONCURRENT_RUN_LIMIT_EXCEEDED"
    view = (await client.get(f"/v1/schedules/{sid}")).json()
    last = view["recentRuns"][0]
    assert last["status"] == "skipped" and last["reason"] == "active_run_cap"
    assert last["runId"] is None
    assert [r["status"] for r in view["recentRuns"][1:]] == ["fired"] * 4
    assert len(await runs_of(client, sid)) == 4
    assert view["paused"] is False  # the cap does not pause the schedule
    more = await client.post("/v1/schedules", json=body)  # this API allows 1 per org
    assert more.status_code == 409 and more.json()["type"] == "SCHEDULE_LIMIT_EXCEEDED"

    # Every fire, skip and pause went to the organization's webhook.
    got = await asyncio.to_thread(receiver.wait_for, hook, 6)
    events = [json.loads(r.body) for r in got]
    assert sorted(e["type"] for e in events) == ["schedule.fired"] * 4 + [
        "schedule.paused",
        "schedule.skipped",
    ]
    (skip,) = [e["data"] for e in events if e["type"] == "schedule.skipped"]
    assert skip["scheduleId"] == sid and skip["reason"] == "active_run_cap"
    fires = {e["data"]["runId"] for e in events if e["type"] == "schedule.fired"}
    assert fires == {r["id"] for r in await runs_of(client, sid)}

    listed = (await client.get("/v1/schedules", params={"enabled": "true"})).json()
    assert [s["id"] for s in listed["data"]] == [sid]
    # Deleting the schedule leaves its run in flight alone.
    assert (await client.delete(f"/v1/schedules/{sid}")).status_code == 204
    gone = await client.get(f"/v1/schedules/{sid}")
    assert gone.status_code == 404 and gone.json()["type"] == "SCHEDULE_NOT_FOUND"
    alive = (await client.get(f"/v1/runs/{held}")).json()
    assert alive["status"] == "waiting_for_input" and alive["scheduleId"] == sid
    await client.post(f"/v1/runs/{held}/cancel")


async def test_schedule_errors(api: httpx.AsyncClient) -> None:
    run = {"prompt": "hi", "model": "scripted"}
    for spec, field in [
        ({"interval": {"everySeconds": 30}}, "spec.interval.everySeconds"),
        ({"cron": ["61 * * * *"]}, "spec.cron"),
        ({"cron": ["0 9 * * 1-5"], "timezone": "Mars/Olympus"}, "spec.timezone"),
    ]:
        answer = await api.post("/v1/schedules", json={"spec": spec, "run": run})
        assert answer.status_code == 400, answer.text
        assert answer.json()["type"] == "SCHEDULE_SPEC_INVALID"
        assert answer.json()["errors"][0]["field"] == field
    bad_run = await api.post(
        "/v1/schedules",
        json={"spec": {"cron": ["0 9 * * *"]}, "run": {**run, "template": "nope"}},
    )
    assert bad_run.status_code == 400 and bad_run.json()["type"] == "RUN_TEMPLATE_NOT_FOUND"
    missing = await api.post("/v1/schedules/sch_nope/pause", json={})
    assert missing.status_code == 404 and missing.json()["type"] == "SCHEDULE_NOT_FOUND"


async def test_a_deleted_template_skips_the_fire_and_pauses_the_schedule(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    hook = "sch-tpl-" + secrets.token_hex(4)
    made = await api.post("/v1/webhooks", json={"url": receiver.url(hook)})
    assert made.status_code == 201, made.text
    slug = "nightly-" + secrets.token_hex(3)
    assert (await api.post("/v1/templates", json={"slug": slug, "size": "s"})).status_code == 201
    body = {
        "spec": {"cron": ["0 3 * * *"]},
        "run": {"prompt": QUICK, "model": "scripted", "template": slug},
    }
    sid = (await api.post("/v1/schedules", json=body)).json()["id"]
    assert (await api.delete(f"/v1/templates/{slug}")).status_code == 204
    fired = await api.post(f"/v1/schedules/{sid}/trigger")
    assert fired.status_code == 400 and fired.json()["type"] == "RUN_TEMPLATE_NOT_FOUND"
    view = (await api.get(f"/v1/schedules/{sid}")).json()
    assert view["paused"] is True and "RUN_TEMPLATE_NOT_FOUND" in view["notes"][-1]["note"]
    assert view["recentRuns"][0]["reason"] == "template_deleted" and view["upcoming"] == []
    got = await asyncio.to_thread(receiver.wait_for, hook, 2)
    types = sorted(json.loads(r.body)["type"] for r in got)
    assert types == ["schedule.paused", "schedule.skipped"]
    await api.delete(f"/v1/schedules/{sid}")


async def test_client_and_cli(stack: Stack, keys: Keys) -> None:
    """The client's schedule methods and ``runyard schedules …`` against the stack."""
    key = await keys.make("sch-cli-" + secrets.token_hex(4))
    made = await asyncio.to_thread(
        runyard, stack, "schedules", "create", QUICK, "--model", "scripted",
        "--cron", "30 6 * * *", "--timezone", "Europe/Paris", "--name", "morning", key=key,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    sid = made.stdout.strip()
    assert sid.startswith("sch_") and made.stderr.count("next:") == 5
    async with AsyncRunyard(stack.api_url, key) as ry:
        got = await ry.get_schedule(sid)
        assert got.name == "morning" and got.spec["timezone"] == "Europe/Paris"
        assert got.next_run_at and got.next_run_at.endswith(("04:30:00Z", "05:30:00Z"))
        changed = await ry.update_schedule(sid, overlap="cancel_other", max_runs=3)
        assert changed.overlap == "cancel_other" and changed.remaining_runs == 3
        assert len(changed.upcoming) == 3  # at most the runs left
        paused = await ry.pause_schedule(sid, "holidays")
        assert paused.paused and paused.notes[-1].note == "holidays"
        # The Temporal Schedule of the same id says the same.
        temporal = await Client.connect(
            stack.env["TEMPORAL_ADDRESS"], namespace=stack.env.get("TEMPORAL_NAMESPACE", "default")
        )
        state = (await temporal.get_schedule_handle(sid).describe()).schedule.state
        assert state.paused and state.note == "holidays" and state.remaining_actions == 3
        await ry.unpause_schedule(sid)
        off = await ry.update_schedule(sid, enabled=False)
        assert not off.enabled and not off.paused and off.upcoming == []
        assert (await temporal.get_schedule_handle(sid).describe()).schedule.state.paused
        assert (await ry.list_schedules(enabled=True)).pagination.total == 0
        assert (await ry.list_schedules(enabled=False)).pagination.total == 1
    listed = await asyncio.to_thread(runyard, stack, "schedules", "list", key=key)
    assert listed.returncode == 0 and sid in listed.stdout and "disabled" in listed.stdout
    async with AsyncRunyard(stack.api_url, key) as ry:
        await ry.delete_schedule(sid)
        with pytest.raises(RunyardAPIError) as missing:
            await ry.get_schedule(sid)
    assert missing.value.code == "SCHEDULE_NOT_FOUND"


async def test_temporal_unreachable(tmp_path: Path) -> None:
    """Without Temporal a schedule cannot exist: 502, and nothing half-made is kept."""
    async with in_process_api(tmp_path, "lonely-sch") as client:
        body = {"spec": {"cron": ["0 9 * * *"]}, "run": {"prompt": "x", "model": "scripted"}}
        resp = await client.post("/v1/schedules", json=body)
        assert resp.status_code == 502 and resp.json()["type"] == "RUN_ORCHESTRATOR_ERROR"
        assert (await client.get("/v1/schedules")).json()["pagination"]["total"] == 0
