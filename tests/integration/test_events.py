"""The event stream over real HTTP: gapless, resumable, replayable; logs and session logs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from sqlalchemy import delete
from sqlmodel import col

from runyard.db.engine import Database
from runyard.db.tables import RunEvent
from tests.conftest import script, wait_for
from tests.fakes.anthropic_server import FakeAnthropic, Reply
from tests.sse import read_events

TERMINAL_TYPES = {"run.completed", "run.failed", "run.cancelled"}


def assert_gapless(events: list[dict[str, Any]]) -> None:
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] in TERMINAL_TYPES for e in events].count(True) == 1
    assert events[-1]["type"] in TERMINAL_TYPES


async def start(api: httpx.AsyncClient, *lines: dict[str, Any], **body: Any) -> str:
    resp = await api.post(
        "/v1/runs", json={"prompt": script(*lines), "model": "scripted", "start": True, **body}
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def full_log(api: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    resp = await api.get(f"/v1/runs/{run_id}/logs")
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in resp.text.splitlines()]


async def test_live_stream_has_every_event_in_order(api: httpx.AsyncClient) -> None:
    run_id = await start(
        api,
        {"tool": "bash", "input": {"command": "echo one"}},
        {"sleep": 0.3, "tool": "write_file", "input": {"path": "x", "content": "y"}},
        {"text": "A final answer long enough to arrive in several deltas."},
    )
    streamed = await read_events(
        api, run_id
    )  # returns when the server closes after the terminal event
    assert_gapless(streamed)
    assert streamed == await full_log(api, run_id)
    types = [e["type"] for e in streamed]
    for t in (
        "run.created",
        "run.started",
        "sandbox.ready",
        "message.delta",
        "message.completed",
        "tool.call",
        "tool.result",
        "usage.updated",
        "output.detected",
        "run.completed",
    ):
        assert t in types, t
    deltas = [e["data"] for e in streamed if e["type"] == "message.delta"]
    completed = [e["data"] for e in streamed if e["type"] == "message.completed"][-1]
    assert len(deltas) >= 3 and all(d["messageId"] == completed["messageId"] for d in deltas)
    assert "".join(d["text"] for d in deltas) == completed["text"]
    call = next(e["data"] for e in streamed if e["type"] == "tool.call")
    result = next(e["data"] for e in streamed if e["type"] == "tool.result")
    assert call["toolCallId"] == result["toolCallId"] and call["name"] == "bash"
    assert call["input"] == {"command": "echo one"} and "one" in result["output"]


async def test_resume_with_last_event_id_and_after_seq(api: httpx.AsyncClient) -> None:
    run_id = await start(
        api,
        *[{"sleep": 0.2, "tool": "bash", "input": {"command": f"echo {i}"}} for i in range(4)],
        {"text": "done"},
    )
    part1 = await read_events(api, run_id, stop_after=3)
    part2 = await read_events(
        api, run_id, stop_after=5, headers={"Last-Event-ID": str(part1[-1]["seq"])}
    )
    part3 = await read_events(api, run_id, params={"after_seq": part2[-1]["seq"]})
    joined = part1 + part2 + part3
    assert_gapless(joined)
    assert joined == await full_log(api, run_id)


async def test_late_join_replays_then_closes(api: httpx.AsyncClient) -> None:
    run_id = await start(api, {"text": "quick"})
    await wait_for(api, run_id, {"completed"})
    replay = await read_events(api, run_id)
    assert_gapless(replay)
    last = replay[-1]["seq"]
    assert await read_events(api, run_id, params={"after_seq": last}) == []
    tail = await read_events(api, run_id, headers={"Last-Event-ID": str(last - 2)})
    assert [e["seq"] for e in tail] == [last - 1, last]


async def test_pings_while_nothing_happens(api: httpx.AsyncClient) -> None:
    run_id = await start(api, {"sleep": 2.5, "text": "slow"})  # the test stack pings every second
    comments: list[str] = []
    events = await read_events(api, run_id, comments=comments)
    assert_gapless(events)
    assert comments.count("ping") >= 1


async def test_pings_keep_coming_while_events_flow(api: httpx.AsyncClient) -> None:
    """A ping at least every interval (1 s here), events or not: about 4 s of tool calls
    of 0.3 s each, an event every few tenths of a second."""
    step = {"tool": "bash", "input": {"command": "sleep 0.3"}}
    run_id = await start(api, *([step] * 12), {"text": "busy"})
    comments: list[str] = []
    events = await read_events(api, run_id, comments=comments)
    assert_gapless(events)
    assert comments.count("ping") >= 2, comments


async def test_json_variant_and_filters(api: httpx.AsyncClient) -> None:
    run_id = await start(api, {"tool": "bash", "input": {"command": "true"}}, {"text": "ok"})
    await wait_for(api, run_id, {"completed"})
    everything = await full_log(api, run_id)
    as_json = await api.get(f"/v1/runs/{run_id}/events", headers={"Accept": "application/json"})
    assert as_json.headers["content-type"] == "application/json" and as_json.json() == everything
    page = await api.get(
        f"/v1/runs/{run_id}/events",
        params={"after_seq": 2, "limit": 3},
        headers={"Accept": "application/json"},
    )
    assert [e["seq"] for e in page.json()] == [3, 4, 5]

    logs = (
        await api.get(
            f"/v1/runs/{run_id}/session-logs", params={"eventTypes": "tool.call,tool.result"}
        )
    ).json()
    assert [e["type"] for e in logs] == ["tool.call", "tool.result"]
    no_deltas = (
        await api.get(f"/v1/runs/{run_id}/session-logs", params={"excludeTypes": "message.delta"})
    ).json()
    assert [e for e in everything if e["type"] != "message.delta"] == no_deltas
    assert len((await api.get(f"/v1/runs/{run_id}/session-logs", params={"limit": 2})).json()) == 2
    after = (
        await api.get(f"/v1/runs/{run_id}/session-logs", params={"after": "2999-01-01T00:00:00Z"})
    ).json()
    assert after == []

    for params in (
        {"eventTypes": "tool.call,bogus"},
        {"excludeTypes": "nope"},
        {"limit": 0},
        {"after": "soon"},
        {"after": "2020-01-01T00:00:00"},
    ):
        resp = await api.get(f"/v1/runs/{run_id}/session-logs", params=params)
        assert resp.status_code == 400 and resp.json()["type"] == "VALIDATION_FAILED", (
            params,
            resp.text,
        )
    huge = "1" * 26  # once an OverflowError in the stream
    for params, headers in (
        ({"after_seq": -1}, {}),
        ({"after_seq": 2**62 + 1}, {}),
        ({}, {"Last-Event-ID": huge}),
        ({}, {"Last-Event-ID": huge, "Accept": "application/json"}),
        ({}, {"Last-Event-ID": "abc"}),
        ({}, {"Last-Event-ID": "-3"}),
        ({}, {"Last-Event-ID": "1_0"}),
        ({}, {"Last-Event-ID": str(2**62 + 1)}),
    ):
        resp = await api.get(f"/v1/runs/{run_id}/events", params=params, headers=headers)
        assert (
            resp.status_code == 400 and resp.headers["content-type"] == "application/problem+json"
        ), (params, headers, resp.status_code, resp.text)
        assert resp.json()["errors"][0]["field"] in ("after_seq", "Last-Event-ID"), resp.text
    ok = await api.get(
        f"/v1/runs/{run_id}/events",
        headers={"Last-Event-ID": str(2**62), "Accept": "application/json"},
    )
    assert ok.status_code == 200 and ok.json() == []


async def test_expired_cursor_is_410(api: httpx.AsyncClient, stack_db: Database) -> None:
    run_id = await start(api, {"text": "old news"})
    await wait_for(api, run_id, {"completed"})
    last = len(await full_log(api, run_id))
    async with stack_db.write() as s:  # what retention does to events older than the window
        await s.execute(
            delete(RunEvent).where(col(RunEvent.run_id) == run_id, col(RunEvent.seq) <= 3)
        )
    resp = await api.get(f"/v1/runs/{run_id}/events", params={"after_seq": 1})
    assert resp.status_code == 410 and resp.json()["type"] == "EVENTS_EXPIRED"
    assert [e["seq"] for e in await read_events(api, run_id, params={"after_seq": 3})][-1] == last
    assert await read_events(api, run_id, params={"after_seq": last}) == []


async def test_retried_model_turn_announces_itself(
    api: httpx.AsyncClient, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reset()
    fake_anthropic.queue(
        Reply(blocks=[{"text": "This first attempt will be cut off."}], cut=True),
        Reply(blocks=[{"text": "Second attempt, complete."}]),
    )
    run = (
        await api.post("/v1/runs", json={"prompt": "hi", "model": "sonnet", "start": True})
    ).json()
    events = await read_events(api, run["id"])
    assert_gapless(events)
    assert events[-1]["type"] == "run.completed", events[-1]
    types = [e["type"] for e in events]
    retried = types.index("turn.retried")
    assert "message.delta" in types[:retried]  # the partial deltas of the dead attempt
    assert types.count("message.completed") == 1 and types.index("message.completed") > retried
    after = [e["data"]["text"] for e in events[retried:] if e["type"] == "message.delta"]
    assert "".join(after) == "Second attempt, complete."
    assert events[retried]["data"]["attempt"] == 2


async def test_a_disconnecting_client_does_not_touch_the_run(api: httpx.AsyncClient) -> None:
    run_id = await start(
        api, {"sleep": 0.5, "tool": "bash", "input": {"command": "true"}}, {"text": "fine"}
    )
    for _ in range(3):
        await read_events(api, run_id, stop_after=2)
    done = await wait_for(api, run_id, {"completed", "failed", "cancelled"})
    assert done["status"] == "completed"
    await asyncio.sleep(0)
