"""Engines and sessions for the store, and the migrations that create its schema.

Two ways in: ``read(fn)`` and ``transact(fn)`` run a synchronous ``fn(session)`` in one
transaction, for the hot paths (the API's reads, every store write of a run's
lifecycle, turns and tools); ``session()`` and ``write()`` give async sessions for the
rest. The synchronous sessions run on threads of this module's own: on SQLite, aiosqlite
hops to a thread for every statement, cursor and transaction step (measured: 7.7 ms for
a tool call's write transaction) where they hop once (1.8 ms); on Postgres, SQLAlchemy's
async adaptation of psycopg cost a third more CPU per read than a thread does. On
SQLite, ``transact``, ``read_inline`` and (in the worker) ``read`` run on the event
loop's thread instead, with no hop at all, and go to a thread only when SQLite answers
busy (``runyard/db/sqlite.py``).

SQLite runs in WAL mode: reads use deferred transactions (readers never block); writes
start with ``BEGIN IMMEDIATE`` so that two processes (API and worker) never deadlock
upgrading a read lock to a write lock, and a process queues its own writers on a lock.
Postgres uses one pool of threads and connections for both; writers that allocate event
numbers lock the run row. Its reads run in autocommit: under READ COMMITTED each statement
sees its own snapshot, in a transaction or not, so ``BEGIN`` and ``ROLLBACK`` around a
read were two round trips that bought nothing (bench.cost counted 36 statements per
cycle of a model turn and a tool call, 14 of them these and pool pings; see
``_ping_when_idle``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker

from runyard.datadir import private_file
from runyard.db import sqlite
from runyard.db.sqlite import JSON_CODEC, Busy, OnLoop, sync_url

T = TypeVar("T")
# Two reader threads measured best on 2 cores (bench/api.py: 1 → 504, 2 → 566, 8 → 460
# get-run/s); more threads mostly contend for the GIL.
_READ_THREADS = 2
# Postgres: reads and writes share one pool; its threads mostly wait on the network.
_PG_THREADS = 8
# A LISTEN connection only reads: without keepalives, a peer gone without a word (a host
# down, a dropped route) would leave it waiting for ever. Dead within about a minute.
_KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
# A pooled Postgres connection unused for this long is pinged before it is handed out.
PING_AFTER_SECONDS = 1.0
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def _ping_when_idle(engine: Engine) -> None:
    """``pool_pre_ping``, for a connection that has been back in the pool for
    ``PING_AFTER_SECONDS`` or more: a server restart takes longer than that, so a
    connection it closed is still caught before use and replaced (a ``DisconnectionError``
    from a checkout makes the pool open another), while a busy process, whose
    connections are back in the pool for microseconds, no longer sends a round trip
    before every transaction."""

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["returned"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned")
        if returned is not None and time.monotonic() - returned < PING_AFTER_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError("the pooled connection is gone") from exc


class Database:
    """The store's connection handles; one per process."""

    def __init__(self, url: str, *, reads_on_loop: bool = False) -> None:
        """``reads_on_loop``: on SQLite, ``read`` and ``read_core`` too run on the event
        loop's thread (the worker's: its reads are its activities', small and few at a
        time). The API keeps reader threads for them: its requests come all at once, and
        one long read (a page of a large list) must not hold up every other request."""
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._on_loop: OnLoop | None = None
        # SQLite's file, None in memory (parsed once: data_version asks 50 times a second).
        self._sqlite_path: str | None = None
        if self.is_sqlite:
            path = make_url(url).database
            if path and path != ":memory:":
                private_file(Path(path))  # SQLite gives -wal and -shm the file's mode
                self._sqlite_path = path
            self.engine = sqlite.async_engine(url, immediate=False)
            self.write_engine = sqlite.async_engine(url, immediate=True)
            # read() runs on plain sqlite3 in a small thread pool: one thread hop per
            # read instead of one per statement, cursor and transaction step.
            self._sync_engine: Engine = sqlite.sync_engine(url, size=_READ_THREADS, immediate=False)
            self._read_engine: Engine = self._sync_engine
            self._sync_read: sessionmaker[Session] = sessionmaker(
                self._sync_engine, expire_on_commit=False
            )
            self._threads: ThreadPoolExecutor = ThreadPoolExecutor(
                _READ_THREADS, thread_name_prefix="runyard-read"
            )
            # One writer thread, for the writes that find another process holding the
            # lock (transact runs on the loop's thread first): they wait for it there.
            self._sync_write_engine: Engine | None = sqlite.sync_engine(url, size=1, immediate=True)
            self._sync_write: sessionmaker[Session] = sessionmaker(
                self._sync_write_engine, expire_on_commit=False
            )
            self._writer: ThreadPoolExecutor = ThreadPoolExecutor(
                1, thread_name_prefix="runyard-write"
            )
            self._on_loop = OnLoop(url)
        else:
            self.engine = create_async_engine(
                url, pool_size=10, max_overflow=20, pool_pre_ping=True, **JSON_CODEC
            )
            self.write_engine = self.engine
            # read() and transact() run synchronous psycopg sessions on a thread pool, as
            # on SQLite: SQLAlchemy's async adaptation cost a third more CPU (a run read by
            # id: 1.74 vs 1.33 ms), and a thread waits on the network without the GIL.
            # Writers need no lock of ours: row locks (lock_run) order them.
            self._sync_engine = create_engine(
                url, pool_size=_PG_THREADS, max_overflow=0, **JSON_CODEC
            )
            _ping_when_idle(self._sync_engine)
            # The same pool; a connection is put in autocommit for a read and back after.
            self._read_engine = self._sync_engine.execution_options(isolation_level="AUTOCOMMIT")
            self._sync_read = sessionmaker(self._read_engine, expire_on_commit=False)
            self._threads = ThreadPoolExecutor(_PG_THREADS, thread_name_prefix="runyard-db")
            self._sync_write_engine = None
            self._sync_write = sessionmaker(self._sync_engine, expire_on_commit=False)
            self._writer = self._threads
        self._reads_on_loop = self._on_loop if reads_on_loop else None
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._version_conn: sqlite3.Connection | None = None
        self._read = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self._write = async_sessionmaker(
            self.write_engine, class_=AsyncSession, expire_on_commit=False
        )

    def session(self) -> AsyncSession:
        """A session for reads (and for writes that need no row lock ordering)."""
        return self._read()

    async def read(self, fn: Callable[[Session], T]) -> T:
        """``fn`` on a synchronous session inside one read transaction (on Postgres in
        autocommit, where a transaction gave a read nothing); its result, and ``fn`` must
        not write. On the loop's thread with ``reads_on_loop`` (SQLite; if SQLite answers
        busy, ``fn`` is called again on a thread: it must only read).

        The hot read paths (authentication, a run by id) use this: one hop to a thread of
        the store's, where an async session on SQLite costs one per driver call.
        """
        if self._reads_on_loop is not None:
            with contextlib.suppress(Busy):
                return self._reads_on_loop.read(fn)
        factory = self._sync_read

        def call() -> T:
            with factory() as session:
                return fn(session)

        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    async def read_core(self, fn: Callable[[Connection], T]) -> T:
        """``fn`` on a plain connection (SQLAlchemy Core, no ORM session) inside one read
        transaction, as ``read`` (autocommit on Postgres): for the hottest reads, where
        building ORM objects cost more than the query (bench/api.py get-run: 0.26 ms →
        0.10 ms a read)."""
        if self._reads_on_loop is not None:
            with contextlib.suppress(Busy):
                return self._reads_on_loop.read_core(fn)
        engine = self._read_engine

        def call() -> T:
            with engine.connect() as conn:
                return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    async def read_inline(self, fn: Callable[[Connection], T]) -> T:
        """``read_core`` for a small read by key or index (get-run's, get-status's, the
        event hub's); on SQLite it sees the store as of each statement, in autocommit.

        On SQLite it runs on the calling thread, the event loop's, in about 90 µs: the hop
        to a reader thread and back cost more than the read, and under load the GIL
        passing between the loop and the readers cost more again (bench.api's get-run:
        0.66 → 0.35 ms of CPU a request, see ``docs/DESIGN.md``). A reader in WAL mode
        takes no lock that a writer holds, so it does not wait; in the rare case SQLite
        answers busy (a WAL being recovered), the read goes to a reader thread instead.
        On Postgres (the network) it is ``read_core``.
        """
        if self._on_loop is not None:
            with contextlib.suppress(Busy):
                return self._on_loop.statement(fn)
        return await self.read_core(fn)

    async def transact(self, fn: Callable[[Session], T]) -> T:
        """``fn`` on a synchronous session inside one write transaction, committed if it
        returns (rolled back if it raises); its result.

        The store's hot writes use this. On SQLite the transaction runs on the loop's
        thread, behind this process's other writers (``runyard/db/sqlite.py``); if
        another process holds the write lock, it goes to this process's writer thread,
        which waits for the lock. On Postgres it is one hop to a thread of the store's.
        """
        factory = self._sync_write

        def call() -> T:
            with factory() as session, session.begin():
                return fn(session)

        async with self._write_lock or nullcontext():
            if self._on_loop is not None:
                with contextlib.suppress(Busy):
                    return self._on_loop.transact(fn)
            done = asyncio.get_running_loop().run_in_executor(self._writer, call)
            try:
                return await asyncio.shield(done)
            except asyncio.CancelledError:
                # The thread cannot be stopped: a cancelled caller waits for its transaction
                # to end (committed or not); on SQLite the lock is held until then, so
                # writers never overlap.
                await asyncio.wait([done])
                raise

    @asynccontextmanager
    async def listen(self, channel: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """Postgres: a connection of its own that LISTENs on ``channel`` (its
        ``notifies()`` gives the notices); it is closed on leaving."""
        url = self.url.replace("postgresql+psycopg://", "postgresql://")
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=5, **_KEEPALIVES
        ) as conn:
            await conn.execute(f"LISTEN {channel}")
            yield conn

    def data_version(self) -> int | None:
        """SQLite: a number that changes whenever a connection other than its own commits
        to the database (``PRAGMA data_version`` on a connection kept for it): about 4 µs,
        never waits for a lock (busy: None, as if changed). Postgres: None (use LISTEN).

        For the loops that watch the store (the API's event hub, the worker's outbox
        pump), on the event loop's thread only.
        """
        if self._sqlite_path is None:  # Postgres, or SQLite in memory
            return None
        try:
            if self._version_conn is None:
                # timeout=0: a busy database answers at once instead of blocking the loop.
                self._version_conn = sqlite3.connect(
                    self._sqlite_path, timeout=0, check_same_thread=False
                )
            row = self._version_conn.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            return None
        return int(row[0])

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session inside one write transaction, committed on success."""
        # SQLite has one writer at a time. Queueing this process's writers on a lock,
        # rather than letting each connection sleep in SQLite's busy handler (1, 2, 5 …
        # 100 ms naps, unfair), cut the create-run p99 of bench/api.py from ~5 s to ~1 s.
        lock = self._write_lock or nullcontext()
        async with lock, self._write() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        if self._on_loop is not None:
            self._on_loop.dispose()
        if self._version_conn is not None:
            self._version_conn.close()
            self._version_conn = None
        self._threads.shutdown(wait=True)
        self._sync_engine.dispose()
        if self._writer is not self._threads:
            self._writer.shutdown(wait=True)
        if self._sync_write_engine is not None:
            self._sync_write_engine.dispose()
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()


def migrate(url: str) -> None:
    """Bring the schema to the newest migration (idempotent; safe to run at every start)."""
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            private_file(Path(path))
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    command.upgrade(cfg, "head")
