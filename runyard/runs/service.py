"""``RunService.create``: a resolved ``RunSpec`` becomes a run.

The run row (``queued``, with ``run.created``) in one transaction, then its workflow.
From then on the workflow owns the run's status: create-with-start asks it to exec in the
same round trip (update-with-start), within the active-run cap. A run whose workflow
cannot be started, or whose start is refused, leaves nothing behind. Callers: the API's
``POST /v1/runs`` and ``POST /v1/threads/{id}/runs``, a fork (``runyard.runs.fork``), best-of-N
(``runyard.runs.attempts``); later a schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard import metrics, tracing
from runyard.db.engine import Database
from runyard.db.tables import Run, RunEvent, RunMessage, ThreadRunOrder
from runyard.db.types import utcnow
from runyard.domain import RunStatus
from runyard.errors import Conflict, OrchestratorUnavailable, RunyardError
from runyard.events import keys
from runyard.events.data import RunCreated
from runyard.events.keys import SEED_PREFIX
from runyard.ids import new_id
from runyard.runs.checks import check_credits
from runyard.runs.spec import RunRequest, RunSpec, resolve
from runyard.runs.thread_order import Placement, Strategy, place
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
    # How it meets an open run of the thread (``runyard/runs/thread_order.py``).
    strategy: Strategy = Strategy.REJECT


@dataclass(frozen=True)
class ForkSeed:
    """The run is a fork (issue 26): it starts from a conversation cut from another run,
    stored as its own first messages (``runyard.runs.fork``); empty for a fork that
    restores only the code."""

    messages: tuple[tuple[str, tuple[dict[str, Any], ...]], ...] = ()


# What a run starts from besides its prompt.
Seed = ThreadSeed | ForkSeed


@dataclass(frozen=True)
class Created:
    run: Run
    replayed: bool  # an earlier create with the same idempotency key made it
    placement: Placement | None = None  # its place in its thread


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
            placement = await self.db.transact(lambda s: _insert(s, run, seed, now))
        except IntegrityError as exc:
            # A concurrent create with the same idempotency key won the race: its run.
            if found := await self.replay(spec.org_id, spec.idempotency_key):
                return Created(found, replayed=True)
            raise Conflict("the run conflicts with one created meanwhile") from exc
        if placement is not None and placement.waits:
            start = False  # it starts when the runs before it in its thread have ended
        await self._start(run, execute=start)
        metrics.run_created()
        tracing.annotate(run_id=run.id, org_id=run.org_id, model=run.model)
        if start:  # the workflow has made it pending: the row as it is now
            fresh: Run | None = await self.db.read(lambda s: s.get(Run, run.id))
            run = fresh or run
        log.info("run.created", run_id=run.id, workflow_id=run.id, org_id=run.org_id, start=start)
        return Created(run, replayed=False, placement=placement)

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

    async def discard(self, run_id: str) -> None:
        """Undo a create whose start was refused after it (a scheduled run's exec, the
        other attempts of a best-of-N that does not fit): the run's workflow, its row and
        its events go, as if it had never been."""
        await self._discard(run_id, started=True)

    async def _discard(self, run_id: str, *, started: bool) -> None:
        """Remove what a refused create made: the row, its events, and its workflow."""
        if started:
            try:
                await self.engine.discard(run_id, "the run's creation was refused")
            except RunyardError as exc:
                log.warning("run.discard_failed", run_id=run_id, error=str(exc))
        async with self.db.write() as s:
            await s.execute(delete(RunEvent).where(col(RunEvent.run_id) == run_id))
            await s.execute(delete(ThreadRunOrder).where(col(ThreadRunOrder.run_id) == run_id))
            await s.execute(delete(RunMessage).where(col(RunMessage.run_id) == run_id))
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
        thread_id=seed.thread_id if isinstance(seed, ThreadSeed) else None,
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
        schedule_id=spec.schedule_id,
        scheduled_at=spec.scheduled_at,
        group_id=spec.group_id,
        forked_from=spec.forked_from,
        approvals=spec.approvals,
        created_at=now,
        updated_at=now,
    )


def _insert(s: Session, run: Run, seed: Seed | None, now: datetime) -> Placement | None:
    placement = None
    if isinstance(seed, ThreadSeed):
        # The thread's row is locked first, so concurrent creates in one thread, from any
        # number of API replicas, check and insert one after the other.
        placement = place(s, run, seed.thread_id, seed.strategy, now)
    s.add(run)
    s.flush()
    if placement is not None and placement.row is not None:
        s.add(placement.row)
    if isinstance(seed, ForkSeed):
        for i, (role, content) in enumerate(seed.messages):
            key = f"{SEED_PREFIX}{i:05d}"
            s.add(RunMessage(run_id=run.id, key=key, role=role, content=list(content)))
        s.flush()
    events = [RunCreated(status=RunStatus.QUEUED).event(keys.CREATED)]
    append_events(s, run, events, now=now)
    return placement
