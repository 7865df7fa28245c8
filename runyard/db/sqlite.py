"""SQLite's side of the store: how its connections are set up, and the connections a
process uses on its event loop's thread (:class:`OnLoop`).

On a thread of the store's, a call costs a hop there and back: the work item, a wake-up
of the thread, the GIL passed twice, a write to the loop's self-pipe and the loop's
wake-up. For the store's small reads and writes that cost more than the SQL. Measured
over 40 scripted 5-tool runs (CPU of each thread from /proc): with its 16 write
transactions and 15 reads a run on threads, the worker used 147 ms of CPU per run
(median of five, 121-170), on the loop's thread 113-128 (three); the API, whose event
hub's reads moved to the loop, 41 ms (33-48) → 25-28.5.

A connection used on the loop never waits for a lock (``busy_timeout`` 0): a wait would
stall every task of the process. When SQLite answers busy, :class:`Busy` is raised
before anything was written, and the caller does the same work on a thread, where
waiting for the lock is harmless.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from runyard.jsonsafe import store_dumps, store_loads

T = TypeVar("T")
# Every JSON column reads and writes standard JSON: a NaN or Infinity is never stored
# (written as null) and one stored before this rule reads as null (runyard/jsonsafe.py).
JSON_CODEC: dict[str, Any] = {"json_serializer": store_dumps, "json_deserializer": store_loads}


def sync_url(url: str) -> str:
    """The synchronous driver URL that alembic uses for the same database."""
    return url.replace("sqlite+aiosqlite://", "sqlite://")


def async_engine(url: str, *, immediate: bool) -> AsyncEngine:
    # Ten kept connections (SQLAlchemy's default keeps five): under fifty concurrent
    # creates the overflow ones were opened and closed per request, a thread and the
    # PRAGMAs each time (seen in py-spy as threads numbered past a hundred).
    engine = create_async_engine(
        url, connect_args={"timeout": 30}, pool_size=10, max_overflow=10, **JSON_CODEC
    )
    setup(engine.sync_engine, immediate=immediate)
    return engine


def sync_engine(
    url: str, *, size: int, immediate: bool, busy_ms: int = 30_000, begin: bool = True
) -> Engine:
    """A pool of ``size`` plain sqlite3 connections, usable from any one thread at a time."""
    engine = create_engine(
        sync_url(url),
        connect_args={"timeout": busy_ms / 1000, "check_same_thread": False},
        pool_size=size,
        max_overflow=0,
        **JSON_CODEC,
    )
    setup(engine, immediate=immediate, busy_ms=busy_ms, begin=begin)
    return engine


def setup(engine: Engine, *, immediate: bool, busy_ms: int = 30_000, begin: bool = True) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the driver so BEGIN is ours to issue.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    if not begin:  # autocommit: each statement is its own transaction
        return

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Busy(Exception):
    """SQLite answered busy on the loop's thread; nothing was written: do it on a thread."""


def is_busy(exc: OperationalError) -> bool:
    return getattr(exc.orig, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


@contextmanager
def busy_as_busy() -> Iterator[None]:
    """SQLite's busy answer, raised as :class:`Busy`; any other error as it is."""
    try:
        yield
    except OperationalError as exc:
        if is_busy(exc):
            raise Busy from exc
        raise


class OnLoop:
    """One process's connections for the event loop's thread, one of each kind, opened
    when first used: autocommit (single statements), reads in one transaction, writes
    in one ``BEGIN IMMEDIATE`` transaction. Never used from two threads; a call runs to
    its end before the loop runs anything else, so each kind needs one connection."""

    def __init__(self, url: str) -> None:
        self._autocommit = sync_engine(url, size=1, immediate=False, busy_ms=0, begin=False)
        self._snapshot = sync_engine(url, size=1, immediate=False, busy_ms=0)
        self._reads = sessionmaker(self._snapshot, expire_on_commit=False)
        self._writer = sync_engine(url, size=1, immediate=True, busy_ms=0)
        self._writes = sessionmaker(self._writer, expire_on_commit=False)
        self._conn: Connection | None = None

    def statement(self, fn: Callable[[Connection], T]) -> T:
        """``fn`` on the autocommit connection (kept open: a checkout costs more than a
        one-row read). Busy: :class:`Busy`, and the connection is replaced."""
        try:
            if self._conn is None:
                self._conn = self._autocommit.connect()
            try:
                return fn(self._conn)
            finally:
                self._conn.rollback()
        except OperationalError as exc:
            self._drop()
            if is_busy(exc):
                raise Busy from exc
            raise

    def read_core(self, fn: Callable[[Connection], T]) -> T:
        """``fn`` on a connection inside one read transaction. Reads in WAL mode take no
        lock a writer holds; busy (a WAL being recovered) raises :class:`Busy`, and ``fn``
        may then be called again elsewhere: it must only read."""
        with busy_as_busy(), self._snapshot.connect() as conn:
            return fn(conn)

    def read(self, fn: Callable[[Session], T]) -> T:
        """:meth:`read_core` on an ORM session."""
        with busy_as_busy(), self._reads() as session:
            return fn(session)

    def transact(self, fn: Callable[[Session], T]) -> T:
        """``fn`` in one write transaction, committed if it returns. The write lock is
        taken before ``fn`` is called; if another process holds it, :class:`Busy` is
        raised and ``fn`` was not called. Any error of ``fn``'s rolls back and is raised."""
        with self._writes() as session, session.begin():
            with busy_as_busy():
                session.connection()  # BEGIN IMMEDIATE, now
            return fn(session)

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.invalidate()
            self._conn.close()
            self._conn = None

    def dispose(self) -> None:
        self._drop()
        for engine in (self._autocommit, self._snapshot, self._writer):
            engine.dispose()
