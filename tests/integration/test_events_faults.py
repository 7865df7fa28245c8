"""Streams across process failures, and on the Postgres store (LISTEN/NOTIFY)."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from tests.conftest import Keys, script, wait_for
from tests.integration.test_events import assert_gapless, full_log
from tests.sse import read_events
from tests.stack import Stack


async def test_api_restart_while_streaming(api: httpx.AsyncClient, stack: Stack) -> None:
    steps = [{"sleep": 0.3, "tool": "bash", "input": {"command": f"echo {i}"}} for i in range(6)]
    run = (
        await api.post(
            "/v1/runs",
            json={
                "prompt": script(*steps, {"text": "survived"}),
                "model": "scripted",
                "start": True,
            },
        )
    ).json()
    first = await read_events(api, run["id"], stop_after=6)
    stack.kill_api()
    stack.start_api()  # same port: the client just reconnects
    rest = await read_events(api, run["id"], headers={"Last-Event-ID": str(first[-1]["seq"])})
    joined = first + rest
    assert_gapless(joined)
    assert joined[-1]["type"] == "run.completed"
    assert joined == await full_log(api, run["id"])


async def test_worker_killed_while_a_client_streams(api: httpx.AsyncClient, stack: Stack) -> None:
    steps = [{"sleep": 0.3, "tool": "bash", "input": {"command": f"echo {i}"}} for i in range(5)]
    run = (
        await api.post(
            "/v1/runs",
            json={"prompt": script(*steps, {"text": "ok"}), "model": "scripted", "start": True},
        )
    ).json()
    first = await read_events(api, run["id"], stop_after=7)
    stack.kill_worker(stack.workers[0])
    stack.start_worker()
    rest = await read_events(api, run["id"], params={"after_seq": first[-1]["seq"]})
    assert_gapless(first + rest)
    assert rest[-1]["type"] == "run.completed"


async def test_stream_on_postgres(pg_stack: Stack, postgres_url: str) -> None:
    from runyard.db.engine import Database

    db = Database(postgres_url)
    key = await Keys(db).make("pg-" + secrets.token_hex(3))
    await db.dispose()
    async with httpx.AsyncClient(
        base_url=pg_stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as c:
        lines: list[dict[str, Any]] = [
            {"sleep": 0.2, "tool": "bash", "input": {"command": f"echo {i}"}} for i in range(3)
        ]
        run = (
            await c.post(
                "/v1/runs",
                json={
                    "prompt": script(*lines, {"text": "from postgres"}),
                    "model": "scripted",
                    "start": True,
                },
            )
        ).json()
        part = await read_events(c, run["id"], stop_after=4)
        rest = await read_events(c, run["id"], headers={"Last-Event-ID": str(part[-1]["seq"])})
        assert_gapless(part + rest)
        assert part + rest == await full_log(c, run["id"])
        done = await wait_for(c, run["id"], {"completed"})
        assert done["outputs"] == [{"type": "text", "text": "from postgres"}]
