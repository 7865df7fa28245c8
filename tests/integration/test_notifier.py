"""The API's event hub on its own: it notices a commit without the pings' help, and on
SQLite it reads the store only when something was committed."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import event

from api.routes.events import _stream
from runyard.db.engine import Database
from runyard.notifier import STREAM_READS, EventNotifier
from runyard.store.events import NewEvent
from tests.conftest import poll_until
from tests.integration.test_store import append, new_run


@pytest.fixture
async def hub(db: Database) -> AsyncIterator[EventNotifier]:
    # No ping within the test: only change detection can wake a stream.
    notifier = EventNotifier(db, ping_seconds=3600, poll_interval=0.01)
    await notifier.start()
    yield notifier
    await notifier.stop()


def count_reads(db: Database, monkeypatch: pytest.MonkeyPatch, *methods: str) -> list[str]:
    """From now on, the name of each function handed to ``db``'s read ``methods``, in
    order: the store reads made (on Postgres ``read_inline`` is ``read_core``)."""
    reads: list[str] = []
    for name in methods:
        real = getattr(db, name)

        async def counted(fn: Callable[[Any], Any], real: Any = real) -> Any:
            reads.append(getattr(fn, "func", fn).__name__)
            return await real(fn)

        monkeypatch.setattr(db, name, counted)
    return reads


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
    reads = count_reads(db, monkeypatch, "read_core", "read_inline")
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


async def test_a_burst_of_streams_keeps_to_its_share_of_the_store(
    db: Database, hub: EventNotifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fifty streams opening at once on one run read its events once (the first seeds
    the hub's tail for all), and hold at most ``STREAM_READS`` of the store's connections
    at any moment, whatever its pool holds: the rest stays for health checks and other
    requests."""
    run = await new_run(db)
    await append(db, run.id, *(NewEvent(f"e{i}", "x", {"n": i}) for i in range(3)))
    await asyncio.sleep(0.1)  # the hub's first look is done
    held = peak = 0

    def checkout(*_: Any) -> None:
        nonlocal held, peak
        held += 1
        peak = max(peak, held)

    def checkin(*_: Any) -> None:
        nonlocal held
        held -= 1

    pools = {db.engine.sync_engine.pool, db._sync_engine.pool}
    for pool in pools:
        event.listen(pool, "checkout", checkout)
        event.listen(pool, "checkin", checkin)
    got: list[list[int]] = []

    async def follow() -> None:
        seqs: list[int] = []
        async for chunk in _stream(hub, run.id, 0):
            seqs += [int(m) for m in re.findall(rb"^id: (\d+)$", chunk, re.M)]
            if len(seqs) == 3:
                got.append(seqs)

    reads = count_reads(db, monkeypatch, "read", "read_core")
    try:
        tasks = [asyncio.create_task(follow()) for _ in range(50)]
        await poll_until(lambda: _true(len(got) == 50), "every stream's events")
        await asyncio.sleep(0.2)  # each stream has looked at the run's status, and waits
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for pool in pools:
            event.remove(pool, "checkout", checkout)
            event.remove(pool, "checkin", checkin)
    assert got == [[1, 2, 3]] * 50
    assert peak <= STREAM_READS, peak
    assert reads.count("_events_after") == 1, reads  # one seed for the fifty
    assert reads.count("run_state") == 50


async def _true(value: bool) -> bool:
    return value


async def test_postgres_notices_carry_the_events_and_the_hub_reads_nothing(
    db: Database, hub: EventNotifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a run's tail is seeded, a commit's notice brings its events: the hub reads the
    store for none of them, and what it holds is byte for byte what a read would give."""
    if db.is_sqlite:
        pytest.skip("SQLite has no notices: the hub polls")
    run = await new_run(db)
    await append(db, run.id, NewEvent("a", "x", {"n": 1}))
    await asyncio.sleep(0.1)  # LISTEN is on
    sub = hub.subscribe(run.id)
    await hub.seed(run.id)
    reads = count_reads(db, monkeypatch, "read_core")  # read_inline's too
    payloads = [{"n": 2, "text": "é\u2028"}, {"z": 1, "a": [1.5, None]}]
    for i, data in enumerate(payloads):
        sub.clear()
        await append(db, run.id, NewEvent(f"e{i}", "x", data))
        assert await asyncio.wait_for(sub.wait(), 10) is True
    # Too big for a notice: the hub reads this one.
    sub.clear()
    await append(db, run.id, NewEvent("big", "x", {"text": "x" * 9000}))
    assert await asyncio.wait_for(sub.wait(), 10) is True
    assert reads == ["_events_after"]
    cached = sub.cached(0)
    assert cached is not None and [e.seq for e in cached] == [1, 2, 3, 4]
    monkeypatch.undo()
    stored = await hub.events_after(run.id, 0)
    assert [e.frame for e in cached] == [e.frame for e in stored]
    assert [e.created for e in cached] == [e.created for e in stored]
    sub.close()
