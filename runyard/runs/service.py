"""``RunService.create``: a resolved ``RunSpec`` becomes a run.

The run row (``queued``, with ``run.created``) in one transaction, then its workflow.
From then on the workflow owns the run's status: create-with-start asks it to exec in the
same round trip (update-with-start), within the active-run cap. A run whose workflow
cannot be started, or whose start is refused, leaves nothing behind. Callers: the API's
``POST /v1/runs`` and ``POST /v1/threads/{id}/runs``; later a fork or a schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard import metrics, tracing
from runyard.db.engine import Database
from runyard.db.tables import Run, RunEvent, Thread
from runyard.db.types import utcnow
from runyard.domain import OPEN_STATUSES, RunStatus
from runyard.errors import Conflict, OrchestratorUnavailable, RunyardError, ThreadNotFound
from runyard.events import keys
from runyard.events.data import RunCreated
from runyard.ids import new_id
from runyard.runs.checks import check_credits
from runyard.runs.spec import RunRequest, RunSpec, resolve
from runyard.settings import Settings
from runyard.store.events import append_events

log = structlog.get_logger("runyard.runs")


class Engine(Protocol):
    """Where runs execute (the API's: Temporal). Both raise ``RunyardError``s;
    ``OrchestratorUnavailable`` from ``start``: nothing was started."""

    async def start(self, run: Run, *, execute: bool) -> None: ...

    async def discard(self, run_id: str, reason: str) -> None: ...


@dataclass(frozen=True)
class ThreadSeed:
    """The run continues a thread: it reads the thread's prior conversation, and is the
    thread's one open run (creation claims the thread, or raises ``Conflict``)."""

    thread_id: str


# What a run starts from besides its prompt. A fork (later) is another kind of seed.
Seed = ThreadSeed


@dataclass(frozen=True)
class Created:
    run: Run
    replayed: bool  # an earlier create with the same idempotency key made it


class RunService:
    def __init__(self, db: Database, settings: Settings, engine: Engine) -> None:
        self.db, self.settings, self.engine = db, settings, engine

    async def resolve(
        self,
        request: RunRequest,
        org_id: str,
        *,
        idempotency_key: str | None = None,
        route_id: str | None = None,
        persona_id: str | None = None,
    ) -> RunSpec:
        return await resolve(
            request,
            org_id,
            db=self.db,
            settings=self.settings,
            idempotency_key=idempotency_key,
            route_id=route_id,
            persona_id=persona_id,
        )

    async def replay(self, org_id: str, idempotency_key: str | None) -> Run | None:
        """The run an earlier create with ``idempotency_key`` made, if any."""
        if not idempotency_key:
            return None
        query = select(Run).where(
            col(Run.org_id) == org_id, col(Run.idempotency_key) == idempotency_key
        )
        found: Run | None = await self.db.read(lambda s: s.execute(query).scalars().first())
        return found

    async def create(
        self, spec: RunSpec, *, seed: Seed | None = None, start: bool = False
    ) -> Created:
        """Create (and with ``start``, start) the run of ``spec``."""
        if found := await self.replay(spec.org_id, spec.idempotency_key):
            return Created(found, replayed=True)
        if start:
            await check_credits(self.db, spec.org_id)
        now = utcnow()
        run = _new_run(spec, seed, now)
        try:
            await self.db.transact(lambda s: _insert(s, run, seed, now))
        except IntegrityError as exc:
            # A concurrent create with the same idempotency key won the race: its run.
            if found := await self.replay(spec.org_id, spec.idempotency_key):
                return Created(found, replayed=True)
            raise Conflict("the run conflicts with one created meanwhile") from exc
        await self._start(run, execute=start)
        metrics.run_created()
        tracing.annotate(run_id=run.id, org_id=run.org_id, model=run.model)
        if start:  # the workflow has made it pending: the row as it is now
            fresh: Run | None = await self.db.read(lambda s: s.get(Run, run.id))
            run = fresh or run
        log.info("run.created", run_id=run.id, workflow_id=run.id, org_id=run.org_id, start=start)
        return Created(run, replayed=False)

    async def _start(self, run: Run, *, execute: bool) -> None:
        try:
            await self.engine.start(run, execute=execute)
        except RunyardError as exc:
            unreachable = isinstance(exc, OrchestratorUnavailable)
            await self._discard(run.id, started=not unreachable)
            log.warning("run.start_failed", run_id=run.id, org_id=run.org_id, error=str(exc))
            if unreachable:
                raise OrchestratorUnavailable(
                    f"the workflow engine could not start the run: {exc}"
                ) from exc
            raise

    async def _discard(self, run_id: str, *, started: bool) -> None:
        """Remove what a refused create made: the row, its events, and its workflow."""
        if started:
            try:
                await self.engine.discard(run_id, "the run's creation was refused")
            except RunyardError as exc:
                log.warning("run.discard_failed", run_id=run_id, error=str(exc))
        async with self.db.write() as s:
            await s.execute(delete(RunEvent).where(col(RunEvent.run_id) == run_id))
            await s.execute(delete(Run).where(col(Run.id) == run_id))


def _new_run(spec: RunSpec, seed: Seed | None, now: datetime) -> Run:
    run_id = new_id("run")
    return Run(
        id=run_id,
        org_id=spec.org_id,
        status=RunStatus.QUEUED,
        prompt=spec.prompt,
        guidance=spec.guidance,
        repo=spec.repo,
        template=spec.template,
        agent_id=spec.agent_id,
        thread_id=seed.thread_id if seed is not None else None,
        model=spec.model,
        guardrails=spec.guardrails.model_dump(by_alias=True),
        env=spec.env,
        sandbox=spec.sandbox.stored(),
        callback_url=spec.callback_url,
        metadata_=spec.metadata,
        idempotency_key=spec.idempotency_key,
        workflow_id=run_id,
        instructions=spec.instructions,
        # With tracing on: this request's trace, which the workflow and its activities join.
        trace_id=tracing.current_trace_id() or new_id("trace"),
        route_id=spec.route_id,
        persona_id=spec.persona_id,
        approvals=spec.approvals,
        created_at=now,
        updated_at=now,
    )


def _insert(s: Session, run: Run, seed: Seed | None, now: datetime) -> None:
    if seed is not None:
        _claim_thread(s, run.org_id, seed.thread_id, now)
    s.add(run)
    s.flush()
    events = [RunCreated(status=RunStatus.QUEUED).event(keys.CREATED)]
    append_events(s, run, events, now=now)


def _claim_thread(s: Session, org_id: str, thread_id: str, now: datetime) -> None:
    """Make ``thread_id`` this transaction's, or raise ``Conflict`` if it has an open run.

    The update locks the thread's row (Postgres) or takes the store's write lock
    (SQLite, ``BEGIN IMMEDIATE``) before the check, so concurrent creates in one thread,
    from any number of API replicas, check and insert one after the other: exactly one
    of them finds the thread free.
    """
    claimed = s.execute(
        update(Thread)
        .where(col(Thread.id) == thread_id, col(Thread.org_id) == org_id)
        .values(updated_at=now)
    )
    if claimed.rowcount == 0:  # type: ignore[attr-defined]
        raise ThreadNotFound(f"no thread {thread_id}")
    busy = s.execute(
        select(col(Run.id))
        .where(col(Run.thread_id) == thread_id, col(Run.status).in_(list(OPEN_STATUSES)))
        .limit(1)
    ).scalar()
    if busy is not None:
        raise Conflict(f"thread {thread_id} already has an open run, {busy}")
