"""Engines and sessions for the store, and the migrations that create its schema.

Two ways in: ``read(fn)`` and ``transact(fn)`` run a synchronous ``fn(session)`` in one
transaction, for the hot paths (the API's reads, every store write of a run's
lifecycle, turns and tools); ``session()`` and ``write()`` give async sessions for the
rest. The synchronous sessions run on threads of this module's own: on SQLite, aiosqlite
hops to a thread for every statement, cursor and transaction step (measured: 7.7 ms for
a tool call's write transaction) where they hop once (1.8 ms); on Postgres, SQLAlchemy's
async adaptation of psycopg cost a third more CPU per read than a thread does.

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
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker

from runyard.datadir import private_file
from runyard.jsonsafe import store_dumps, store_loads

T = TypeVar("T")
# Two reader threads measured best on 2 cores (bench/api.py: 1 → 504, 2 → 566, 8 → 460
# get-run/s); more threads mostly contend for the GIL.
_READ_THREADS = 2
# Postgres: reads and writes share one pool; its threads mostly wait on the network.
_PG_THREADS = 8
# A pooled Postgres connection unused for this long is pinged before it is handed out.
PING_AFTER_SECONDS = 1.0
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Every JSON column reads and writes standard JSON: a NaN or Infinity is never stored
# (written as null) and one stored before this rule reads as null (runyard/jsonsafe.py).
JSON_CODEC: dict[str, Any] = {"json_serializer": store_dumps, "json_deserializer": store_loads}


def _sqlite_engine(url: str, *, immediate: bool) -> AsyncEngine:
    # Ten kept connections (SQLAlchemy's default keeps five): under fifty concurrent
    # creates the overflow ones were opened and closed per request, a thread and the
    # PRAGMAs each time (seen in py-spy as threads numbered past a hundred).
    engine = create_async_engine(
        url, connect_args={"timeout": 30}, pool_size=10, max_overflow=10, **JSON_CODEC
    )
    _sqlite_setup(engine.sync_engine, immediate=immediate)
    return engine


def _sqlite_setup(
    engine: Engine, *, immediate: bool, busy_ms: int = 30_000, begin: bool = True
) -> None:
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

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = make_url(url).database
            if path and path != ":memory:":
                private_file(Path(path))  # SQLite gives -wal and -shm the file's mode
            self.engine = _sqlite_engine(url, immediate=False)
            self.write_engine = _sqlite_engine(url, immediate=True)
            # read() runs on plain sqlite3 in a small thread pool: one thread hop per
            # read instead of one per statement, cursor and transaction step.
            self._sync_engine: Engine = create_engine(
                sync_url(url),
                connect_args={"timeout": 30, "check_same_thread": False},
                pool_size=_READ_THREADS,
                max_overflow=0,
                **JSON_CODEC,
            )
            _sqlite_setup(self._sync_engine, immediate=False)
            self._read_engine: Engine = self._sync_engine
            self._sync_read: sessionmaker[Session] = sessionmaker(
                self._sync_engine, expire_on_commit=False
            )
            self._threads: ThreadPoolExecutor = ThreadPoolExecutor(
                _READ_THREADS, thread_name_prefix="runyard-read"
            )
            # One writer thread: this process's writes are serialized anyway.
            self._sync_write_engine: Engine | None = create_engine(
                sync_url(url),
                connect_args={"timeout": 30, "check_same_thread": False},
                pool_size=1,
                max_overflow=0,
                **JSON_CODEC,
            )
            _sqlite_setup(self._sync_write_engine, immediate=True)
            self._sync_write: sessionmaker[Session] = sessionmaker(
                self._sync_write_engine, expire_on_commit=False
            )
            self._writer: ThreadPoolExecutor = ThreadPoolExecutor(
                1, thread_name_prefix="runyard-write"
            )
            # read_inline(): one connection, used on the event loop's thread, that never
            # waits for a lock; in autocommit (its reads are one statement each).
            self._inline_engine: Engine | None = create_engine(
                sync_url(url),
                connect_args={"timeout": 0, "check_same_thread": False},
                pool_size=1,
                max_overflow=0,
                **JSON_CODEC,
            )
            _sqlite_setup(self._inline_engine, immediate=False, busy_ms=0, begin=False)
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
            self._inline_engine = None
        self._inline: Connection | None = None
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
        not write.

        The hot read paths (authentication, a run by id) use this: one hop to a thread of
        the store's, where an async session on SQLite costs one per driver call.
        """
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
        engine = self._read_engine

        def call() -> T:
            with engine.connect() as conn:
                return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    async def read_inline(self, fn: Callable[[Connection], T]) -> T:
        """``read_core`` for one statement reading a small row by key (get-run's,
        get-status's); on SQLite it sees the store as of that statement, in autocommit.

        On SQLite it runs on the calling thread, the event loop's, in about 90 µs: the hop
        to a reader thread and back cost more than the read, and under load the GIL
        passing between the loop and the readers cost more again (bench.api's get-run:
        0.66 → 0.35 ms of CPU a request, see ``docs/DESIGN.md``). A reader in WAL mode
        takes no lock that a writer holds, so it does not wait; in the rare case SQLite
        answers busy (a WAL being recovered), the read goes to a reader thread instead.
        On Postgres (the network) it is ``read_core``.
        """
        if self._inline_engine is None:
            return await self.read_core(fn)
        try:
            if self._inline is None:
                self._inline = self._inline_engine.connect()
            try:
                return fn(self._inline)
            finally:
                self._inline.rollback()
        except OperationalError as exc:
            busy = getattr(exc.orig, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY
            self._drop_inline()
            if not busy:
                raise
        return await self.read_core(fn)

    def _drop_inline(self) -> None:
        if self._inline is not None:
            self._inline.invalidate()
            self._inline.close()
            self._inline = None

    async def transact(self, fn: Callable[[Session], T]) -> T:
        """``fn`` on a synchronous session inside one write transaction, committed if it
        returns (rolled back if it raises); its result.

        The store's hot writes use this: the whole transaction is one hop to a thread; on
        SQLite to the one writer thread, queued behind this process's other writers.
        """
        factory = self._sync_write

        def call() -> T:
            with factory() as session, session.begin():
                return fn(session)

        async with self._write_lock or nullcontext():
            done = asyncio.get_running_loop().run_in_executor(self._writer, call)
            try:
                return await asyncio.shield(done)
            except asyncio.CancelledError:
                # The thread cannot be stopped: a cancelled caller waits for its transaction
                # to end (committed or not); on SQLite the lock is held until then, so
                # writers never overlap.
                await asyncio.wait([done])
                raise

    def data_version(self) -> int | None:
        """SQLite: a number that changes whenever a connection other than its own commits
        to the database (``PRAGMA data_version`` on a connection kept for it): about 4 µs,
        never waits for a lock (busy: None, as if changed). Postgres: None (use LISTEN).

        For the loops that watch the store (the API's event hub, the worker's outbox
        pump), on the event loop's thread only.
        """
        if not self.is_sqlite:
            return None
        path = make_url(self.url).database
        if not path or path == ":memory:":
            return None
        try:
            if self._version_conn is None:
                # timeout=0: a busy database answers at once instead of blocking the loop.
                self._version_conn = sqlite3.connect(path, timeout=0, check_same_thread=False)
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
        self._drop_inline()
        if self._inline_engine is not None:
            self._inline_engine.dispose()
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


def sync_url(url: str) -> str:
    """The synchronous driver URL that alembic uses for the same database."""
    return url.replace("sqlite+aiosqlite://", "sqlite://")


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
