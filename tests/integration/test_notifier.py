"""The API's event hub on its own: it notices a commit without the pings' help, and on
SQLite it reads the store only when something was committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from runyard.db.engine import Database
from runyard.notifier import EventNotifier
from runyard.store.events import NewEvent
from tests.integration.test_store import append, new_run


@pytest.fixture
async def hub(db: Database) -> AsyncIterator[EventNotifier]:
    # No ping within the test: only change detection can wake a stream.
    notifier = EventNotifier(db, ping_seconds=3600, poll_interval=0.01)
    await notifier.start()
    yield notifier
    await notifier.stop()


async def test_a_commit_wakes_the_runs_streams_with_its_events(
    db: Database, hub: EventNotifier
) -> None:
    run = await new_run(db)
    await asyncio.sleep(0.1)  # the hub's first look (and, on Postgres, LISTEN) is done
    sub = hub.subscribe(run.id)
    sub.clear()
    await append(db, run.id, NewEvent("a", "x", {"n": 1}), NewEvent("b", "x", {"n": 2}))
    assert await asyncio.wait_for(sub.wait(), 10) is True  # a change, not a ping
    cached = sub.cached(0)
    assert cached is not None and [e.seq for e in cached] == [1, 2]
    assert cached[1].json["data"] == {"n": 2}
    sub.close()


async def test_sqlite_idle_ticks_do_not_read_the_store(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not db.is_sqlite:
        pytest.skip("Postgres is told of changes (LISTEN/NOTIFY); it does not poll")
    run = await new_run(db)
    reads: list[str] = []
    real_read = db.read

    async def counted(fn: Callable[[Any], Any]) -> Any:
        reads.append(getattr(fn, "func", fn).__name__)
        return await real_read(fn)

    monkeypatch.setattr(db, "read", counted)
    hub = EventNotifier(db, ping_seconds=3600, poll_interval=0.01)
    await hub.start()
    try:
        sub = hub.subscribe(run.id)
        await asyncio.sleep(0.3)  # some 30 ticks, nothing committed
        assert reads == ["_new_events"]  # the first look only
        sub.clear()
        await append(db, run.id, NewEvent("a", "x"))
        assert await asyncio.wait_for(sub.wait(), 10) is True
        assert reads[1:3] == ["_new_events", "_events_after"]
        sub.close()
    finally:
        await hub.stop()
