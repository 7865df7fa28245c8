"""Run creation without HTTP (``runyard.runs``), on SQLite and on Postgres: a caller that
is no route (a schedule, a fork) resolves a request, creates the run, and gets typed
``RunyardError``s; a refused start leaves nothing behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from runyard.db.engine import Database
from runyard.db.tables import Run, RunEvent, Thread
from runyard.db.types import utcnow
from runyard.errors import (
    AgentNotFound,
    ConcurrentRunLimitExceeded,
    Conflict,
    InvalidInput,
    OrchestratorUnavailable,
    RunyardError,
    TemplateNotFound,
    ThreadNotFound,
)
from runyard.ids import new_id
from runyard.runs import RunService, ThreadSeed
from runyard.settings import Settings
from runyard.store.orgs import ensure_org


class Request:
    """A ``RunRequest`` that is no HTTP body."""

    def __init__(self, **fields: Any) -> None:
        self.prompt = "hello"
        self.repo: str | None = None
        self.template = "default"
        self.agent_id: str | None = None
        self.thread_id: str | None = None
        self.model: str | None = "scripted"
        self.guidance: str | None = None
        self.env: dict[str, str] = {}
        self.max_turns: int | None = None
        self.max_cost_usd: float | None = None
        self.timeout_seconds: int | None = None
        self.callback_url: str | None = None
        self.metadata: dict[str, Any] = {}
        self.model_fields_set = set(fields)
        for name, value in fields.items():
            setattr(self, name, value)


class Engine:
    def __init__(self, refuse: RunyardError | None = None) -> None:
        self.refuse = refuse
        self.started: list[tuple[str, bool]] = []
        self.discarded: list[str] = []

    async def start(self, run: Run, *, execute: bool) -> None:
        self.started.append((run.id, execute))
        if self.refuse is not None:
            raise self.refuse

    async def discard(self, run_id: str, reason: str) -> None:
        self.discarded.append(run_id)


async def _org(db: Database) -> str:
    async with db.write() as s:
        return (await ensure_org(s, "org-" + new_id("x", 6))).id


async def _thread(db: Database, org_id: str) -> str:
    now = utcnow()
    thread = Thread(id=new_id("thr"), org_id=org_id, metadata_={}, created_at=now, updated_at=now)
    async with db.write() as s:
        s.add(thread)
    return thread.id


async def _rows(db: Database, org_id: str) -> tuple[int, int]:
    async with db.session() as s:
        runs = await s.scalar(select(func.count()).where(col(Run.org_id) == org_id))
        events = await s.scalar(
            select(func.count())
            .select_from(RunEvent)
            .join(Run, col(Run.id) == col(RunEvent.run_id))
            .where(col(Run.org_id) == org_id)
        )
    return int(runs or 0), int(events or 0)


def _service(db: Database, tmp_path: Path, engine: Engine) -> RunService:
    return RunService(db, Settings(data_dir=tmp_path, anthropic_api_key=None), engine)


async def test_create_without_http_resolves_and_seeds(db: Database, tmp_path: Path) -> None:
    engine = Engine()
    runs = _service(db, tmp_path, engine)
    org = await _org(db)
    spec = await runs.resolve(Request(max_turns=7), org, idempotency_key="k1")
    assert spec.model == "scripted" and spec.template == "default"
    assert spec.guardrails.max_turns == 7
    created = await runs.create(spec)
    assert not created.replayed and created.run.status == "queued"
    assert created.run.guardrails["maxTurns"] == 7
    assert created.run.sandbox is not None and created.run.sandbox["id"] is None
    assert engine.started == [(created.run.id, False)]
    again = await runs.create(spec)  # the same idempotency key: the same run
    assert again.replayed and again.run.id == created.run.id

    thread = await _thread(db, org)
    first = await runs.create(await runs.resolve(Request(), org), seed=ThreadSeed(thread))
    assert first.run.thread_id == thread
    with pytest.raises(Conflict, match="already has an open run"):
        await runs.create(await runs.resolve(Request(), org), seed=ThreadSeed(thread))
    other = await _org(db)  # another organization's thread is no seed of this one's run
    with pytest.raises(ThreadNotFound):
        await runs.create(await runs.resolve(Request(), other), seed=ThreadSeed(thread))


async def test_refusals_are_typed_errors(db: Database, tmp_path: Path) -> None:
    runs = _service(db, tmp_path, Engine())
    org = await _org(db)
    with pytest.raises(TemplateNotFound):
        await runs.resolve(Request(template="nope"), org)
    with pytest.raises(AgentNotFound):
        await runs.resolve(Request(agent_id="agt_missing"), org)
    with pytest.raises(ThreadNotFound):
        await runs.resolve(Request(thread_id="thr_missing"), org)
    with pytest.raises(InvalidInput) as invalid:
        await runs.resolve(Request(model="gpt-9"), org)
    assert invalid.value.field_errors[0]["field"] == "model"
    assert invalid.value.field_errors[0]["code"] == "invalid_model"
    with pytest.raises(InvalidInput) as bad_repo:
        await runs.resolve(Request(repo="not a repo"), org)
    assert bad_repo.value.field_errors[0]["code"] == "invalid_repo"


@pytest.mark.parametrize(
    ("refusal", "discarded"),
    [
        (ConcurrentRunLimitExceeded("at the cap"), True),
        (OrchestratorUnavailable("unreachable"), False),
    ],
)
async def test_a_refused_start_leaves_nothing(
    db: Database, tmp_path: Path, refusal: RunyardError, discarded: bool
) -> None:
    engine = Engine(refuse=refusal)
    runs = _service(db, tmp_path, engine)
    org = await _org(db)
    thread = await _thread(db, org)
    spec = await runs.resolve(Request(), org)
    with pytest.raises(type(refusal)):
        await runs.create(spec, seed=ThreadSeed(thread), start=True)
    assert await _rows(db, org) == (0, 0)
    assert engine.discarded == ([engine.started[0][0]] if discarded else [])
    # The thread is free again.
    free = Engine()
    created = await _service(db, tmp_path, free).create(spec, seed=ThreadSeed(thread))
    assert created.run.thread_id == thread
