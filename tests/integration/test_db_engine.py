"""The store's connections: on Postgres, reads outside transactions and pooled
connections the server closed (a restart) replaced before use once they have sat idle;
on SQLite, ``read_inline`` and ``transact`` (and the worker's reads) on the event
loop's thread, and on a store thread when SQLite answers busy."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from runyard.db import engine as engine_module
from runyard.db.engine import Database, migrate
from tests.conftest import PG_ADMIN


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Database]:
    migrate(postgres_url)
    db = Database(postgres_url)
    yield db
    await db.dispose()


def _status(s: Session) -> TransactionStatus:
    s.execute(text("SELECT 1"))
    return TransactionStatus(s.connection().connection.dbapi_connection.info.transaction_status)  # type: ignore[union-attr]


def _core_status(c: Connection) -> TransactionStatus:
    c.execute(text("SELECT 1"))
    return TransactionStatus(c.connection.dbapi_connection.info.transaction_status)  # type: ignore[union-attr]


def _one(s: Session) -> int:
    return int(s.execute(text("SELECT 1")).scalar_one())


def _kill_connections(url: str) -> int:
    """Terminate every server connection to ``url``'s database but this one; how many."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (make_url(url).database,),
        ).fetchall()
    return len(rows)


async def test_reads_send_no_begin_and_writes_stay_transactions(pg: Database) -> None:
    # Under READ COMMITTED a transaction gave a read nothing but two round trips.
    assert await pg.read(_status) == TransactionStatus.IDLE
    assert await pg.read_core(_core_status) == TransactionStatus.IDLE
    assert await pg.transact(_status) == TransactionStatus.INTRANS
    # The connection a read used is back out of autocommit for the next writer.
    for _ in range(3):
        assert await pg.transact(_status) == TransactionStatus.INTRANS


async def test_an_idle_connection_the_server_closed_is_replaced(
    pg: Database, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await pg.read(_one) == 1
    assert await pg.transact(_one) == 1
    monkeypatch.setattr(engine_module, "PING_AFTER_SECONDS", 0.0)  # every one is idle
    assert _kill_connections(postgres_url) >= 1
    assert await pg.read(_one) == 1
    assert _kill_connections(postgres_url) >= 1
    assert await pg.transact(_one) == 1


async def test_a_just_used_connection_is_not_pinged_and_one_call_pays(
    pg: Database, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The price of skipping the ping on a busy connection: had the server closed it in
    the second since its last use, one call fails, and the pool drops every connection
    it held, so the next call works."""
    monkeypatch.setattr(engine_module, "PING_AFTER_SECONDS", 3600.0)
    assert await pg.read(_one) == 1
    assert _kill_connections(postgres_url) >= 1
    with pytest.raises(DBAPIError) as failed:
        await pg.read(_one)
    assert failed.value.connection_invalidated
    assert await pg.read(_one) == 1
    assert await pg.transact(_one) == 1


@pytest.fixture
async def lite(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    db = Database(url)
    yield db
    await db.dispose()


def _thread_and_one(c: Connection) -> tuple[str, int]:
    return threading.current_thread().name, int(c.execute(text("SELECT 1")).scalar_one())


async def test_sqlite_inline_reads_run_on_the_loop_and_go_to_a_thread_when_busy(
    lite: Database, tmp_path: Path
) -> None:
    here = threading.current_thread().name
    assert await lite.read_inline(_thread_and_one) == (here, 1)
    # Another connection holds the write lock: on the loop, a statement that would wait
    # for it fails at once (busy), and the read is done again on a reader thread.
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    seen: list[str] = []

    def wants_the_lock(c: Connection) -> tuple[str, int]:
        seen.append(threading.current_thread().name)
        if len(seen) == 1:
            c.exec_driver_sql("BEGIN IMMEDIATE")  # SQLITE_BUSY, as a WAL in recovery
        return _thread_and_one(c)

    try:
        name, one = await lite.read_inline(wants_the_lock)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert one == 1 and seen[0] == here and name.startswith("runyard-read")
    assert await lite.read_inline(_thread_and_one) == (here, 1)  # back on the loop


async def test_sqlite_inline_read_errors_are_raised_once_and_the_next_read_works(
    lite: Database,
) -> None:
    tries: list[str] = []

    def broken(c: Connection) -> None:
        tries.append(threading.current_thread().name)
        c.exec_driver_sql("SELECT * FROM no_such_table")

    with pytest.raises(OperationalError, match="no such table"):
        await lite.read_inline(broken)
    assert tries == [threading.current_thread().name]  # not tried again on a thread
    assert await lite.read_inline(_thread_and_one) == (threading.current_thread().name, 1)


def _write_marker(value: str) -> Callable[[Session], str]:
    """A write transaction's fn: stores ``value`` in a scratch table; the thread it ran on."""

    def fn(s: Session) -> str:
        s.execute(text("CREATE TABLE IF NOT EXISTS scratch (v TEXT)"))
        s.execute(text("INSERT INTO scratch (v) VALUES (:v)"), {"v": value})
        return threading.current_thread().name

    return fn


def _markers(c: Connection) -> list[str]:
    return [str(v) for v in c.execute(text("SELECT v FROM scratch ORDER BY rowid")).scalars()]


async def test_sqlite_writes_run_on_the_loop_and_wait_on_a_thread_when_locked(
    lite: Database, tmp_path: Path
) -> None:
    here = threading.current_thread().name
    assert await lite.transact(_write_marker("a")) == here
    # Another process holds the write lock: the loop never waits for it. The transaction
    # goes to the writer thread before its fn is called, and waits there.
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    calls: list[str] = []

    def counted(s: Session) -> str:
        calls.append(threading.current_thread().name)
        return _write_marker("b")(s)

    asyncio.get_running_loop().call_later(0.3, holder.execute, "ROLLBACK")
    t0 = time.monotonic()
    try:
        name = await lite.transact(counted)
    finally:
        holder.close()
    assert name.startswith("runyard-write") and calls == [name]  # called once, there
    assert time.monotonic() - t0 >= 0.25  # it waited for the lock, the loop did not
    assert await lite.transact(_write_marker("c")) == here  # back on the loop
    assert await lite.read_inline(_markers) == ["a", "b", "c"]


async def test_sqlite_write_errors_roll_back_on_the_loop_and_are_raised_once(
    lite: Database,
) -> None:
    await lite.transact(_write_marker("kept"))
    tries: list[str] = []

    def broken(s: Session) -> None:
        tries.append(threading.current_thread().name)
        _write_marker("lost")(s)
        s.execute(text("INSERT INTO no_such_table VALUES (1)"))

    with pytest.raises(OperationalError, match="no such table"):
        await lite.transact(broken)
    assert tries == [threading.current_thread().name]  # not tried again on a thread
    assert await lite.read_inline(_markers) == ["kept"]  # its first insert rolled back
    assert await lite.transact(_write_marker("next")) == threading.current_thread().name


async def test_sqlite_reads_on_the_loop_go_to_a_thread_when_busy(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    db = Database(url, reads_on_loop=True)
    try:
        here = threading.current_thread().name
        await db.transact(_write_marker("x"))
        assert await db.read(lambda s: (threading.current_thread().name, _one(s))) == (here, 1)
        assert await db.read_core(_thread_and_one) == (here, 1)
        holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        seen: list[str] = []

        def busy_once(c: Connection) -> tuple[str, list[str]]:
            seen.append(threading.current_thread().name)
            if len(seen) == 1:  # a statement that wants the lock: busy, as in WAL recovery
                c.exec_driver_sql("UPDATE scratch SET v = v WHERE 0")
            return threading.current_thread().name, _markers(c)

        try:
            name, markers = await db.read_core(busy_once)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert seen[0] == here and name.startswith("runyard-read") and markers == ["x"]
        assert await db.read_core(_thread_and_one) == (here, 1)
    finally:
        await db.dispose()
    # Without reads_on_loop (the API), reads stay on the reader threads.
    api = Database(url)
    try:
        name, _ = await api.read_core(_thread_and_one)
        assert name.startswith("runyard-read")
    finally:
        await api.dispose()
