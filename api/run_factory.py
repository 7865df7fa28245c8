"""Creating a run: everything ``POST /v1/runs`` and ``POST /v1/threads/{id}/runs`` share.

Checks against the store and settings (template, agent, thread, model key, repo,
guardrails), the run row (``queued``, with ``run.created``) in one transaction, then the
workflow. From then on the workflow owns the run's status: create-with-start asks it to
exec in the same round trip (update-with-start), within the active-run cap. A run whose
workflow cannot be started, or whose start is refused, leaves nothing behind.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from api.auth import Principal
from api.callbacks import allowed_callback
from api.credits import check_credits
from api.errors import ProblemError
from api.orchestrator import TemporalConnector, run_input
from api.repo_intake import check_repo
from api.schemas import CreateRun
from runyard import metrics, tracing
from runyard.db.engine import Database
from runyard.db.tables import Agent, Run, RunEvent, Template, Thread
from runyard.db.types import utcnow
from runyard.domain import OPEN_STATUSES, ErrorCode, EventType, RunStatus
from runyard.errors import OrchestratorUnavailable, RunyardError
from runyard.ids import new_id
from runyard.llm.pricing import is_valid_model, needs_anthropic_key
from runyard.sandbox.base import SIZES
from runyard.settings import Settings
from runyard.store.events import NewEvent, append_events
from runyard.store.templates import find_template

log = structlog.get_logger("runyard.api")


def invalid(field: str, message: str, code: str = "invalid") -> ProblemError:
    return ProblemError(
        400,
        ErrorCode.VALIDATION_FAILED,
        f"{field}: {message}",
        extra={"errors": [{"field": field, "message": message, "code": code}]},
    )


async def find_by_idempotency_key(db: Database, org_id: str, key: str) -> Run | None:
    query = select(Run).where(col(Run.org_id) == org_id, col(Run.idempotency_key) == key)
    return await db.read(lambda s: s.execute(query).scalars().first())


def _claim_thread(s: Session, thread_id: str, now: datetime) -> None:
    """Make ``thread_id`` this transaction's, or raise 409 if it has an open run.

    The update locks the thread's row (Postgres) or takes the store's write lock
    (SQLite, ``BEGIN IMMEDIATE``) before the check, so concurrent creates in one thread,
    from any number of API replicas, check and insert one after the other: exactly one
    of them finds the thread free.
    """
    s.execute(update(Thread).where(col(Thread.id) == thread_id).values(updated_at=now))
    busy = s.execute(
        select(col(Run.id))
        .where(col(Run.thread_id) == thread_id, col(Run.status).in_(list(OPEN_STATUSES)))
        .limit(1)
    ).scalar()
    if busy is not None:
        raise ProblemError(409, "CONFLICT", f"thread {thread_id} already has an open run, {busy}")


async def _resolve(
    body: CreateRun, org_id: str, db: Database, settings: Settings
) -> dict[str, Any]:
    """Everything create checks against the store and settings; the run's resolved fields."""

    def lookups(s: Session) -> tuple[Agent | None, str, Template | None]:
        agent: Agent | None = None
        if body.agent_id is not None:
            agent = s.get(Agent, body.agent_id)
            if agent is None or agent.org_id != org_id:
                raise ProblemError(404, "AGENT_NOT_FOUND", f"no agent {body.agent_id}")
        if body.thread_id is not None:
            thread = s.get(Thread, body.thread_id)
            if thread is None or thread.org_id != org_id:
                raise ProblemError(404, "THREAD_NOT_FOUND", f"no thread {body.thread_id}")
        slug = body.template
        if "template" not in body.model_fields_set and agent is not None and agent.template:
            slug = agent.template
        return agent, slug, find_template(s, org_id, slug)

    agent, slug, template = await db.read(lookups)
    if template is None:
        raise ProblemError(
            400, "RUN_TEMPLATE_NOT_FOUND", f"no template '{slug}'", title="Template not found"
        )
    if template.provider == "e2b" and not settings.e2b_api_key:
        raise invalid(
            "template",
            f"template '{slug}' runs its sandbox on E2B, and this server has no E2B_API_KEY",
            "provider_unavailable",
        )
    defaults = template.defaults or {}
    model = body.model or (agent.model if agent else None) or defaults.get("model") or "sonnet"
    if not is_valid_model(model):
        raise invalid(
            "model",
            f"unknown model '{model}': use sonnet, opus, haiku, scripted, "
            "a claude-… model id or anthropic/<id>",
            "invalid_model",
        )
    if needs_anthropic_key(model) and not settings.anthropic_api_key:
        raise ProblemError(
            400,
            "RUN_API_KEY_REQUIRED",
            f"model '{model}' needs ANTHROPIC_API_KEY, which this server does not have; "
            "use model 'scripted' to run without a key",
        )
    timeout = (
        body.timeout_seconds or defaults.get("timeoutSeconds") or settings.default_timeout_seconds
    )
    if timeout < settings.min_timeout_seconds:
        raise invalid(
            "timeoutSeconds",
            f"must be at least {settings.min_timeout_seconds}",
            "greater_than_equal",
        )
    if body.callback_url is not None:
        await allowed_callback(body.callback_url, settings)
    if body.repo is not None:
        await check_repo(body.repo, settings)
    return {
        "model": model,
        "template": slug,
        # The template's env under the run's (run wins), as the run resolved it now.
        "env": {**(template.env or {}), **body.env},
        # What the template's size gives the sandbox; its id is added once it exists.
        "sandbox": {
            "id": None,
            "provider": template.provider,
            "size": template.size,
            "resources": dict(SIZES[template.size]),
        },
        "instructions": agent.instructions if agent else None,
        "guardrails": {
            "maxTurns": body.max_turns or defaults.get("maxTurns") or settings.default_max_turns,
            "maxCostUsd": body.max_cost_usd
            or defaults.get("maxCostUsd")
            or settings.default_max_cost_usd,
            "timeoutSeconds": timeout,
        },
    }


async def create_run(
    body: CreateRun,
    principal: Principal,
    db: Database,
    settings: Settings,
    temporal: TemporalConnector,
    *,
    idempotency_key: str | None,
    route_id: str | None = None,
    persona_id: str | None = None,
) -> tuple[Run, bool]:
    """Create (and with ``body.start``, start) a run; returns (run, replayed)."""
    if idempotency_key and (
        found := await find_by_idempotency_key(db, principal.org_id, idempotency_key)
    ):
        return found, True
    resolved = await _resolve(body, principal.org_id, db, settings)
    if body.start:
        await check_credits(db, principal.org_id)
    now = utcnow()
    run_id = new_id("run")
    run = Run(
        id=run_id,
        org_id=principal.org_id,
        status=RunStatus.QUEUED,
        prompt=body.prompt,
        guidance=body.guidance,
        repo=body.repo,
        template=resolved["template"],
        agent_id=body.agent_id,
        thread_id=body.thread_id,
        model=resolved["model"],
        guardrails=resolved["guardrails"],
        env=resolved["env"],
        sandbox=resolved["sandbox"],
        callback_url=body.callback_url,
        metadata_=body.metadata,
        idempotency_key=idempotency_key,
        workflow_id=run_id,
        instructions=resolved["instructions"],
        # With tracing on: this request's trace, which the workflow and its activities join.
        trace_id=tracing.current_trace_id() or new_id("trace"),
        route_id=route_id,
        persona_id=persona_id,
        created_at=now,
        updated_at=now,
    )
    events = [NewEvent("created", EventType.RUN_CREATED, {"status": RunStatus.QUEUED})]
    try:

        def insert(s: Session) -> None:
            if run.thread_id is not None:
                _claim_thread(s, run.thread_id, now)
            s.add(run)
            s.flush()
            append_events(s, run, events, now=now)

        await db.transact(insert)
    except IntegrityError as exc:
        # A concurrent create with the same Idempotency-Key won the race: answer with its run.
        if idempotency_key and (
            found := await find_by_idempotency_key(db, principal.org_id, idempotency_key)
        ):
            return found, True
        raise ProblemError(
            409, ErrorCode.CONFLICT, "the run conflicts with one created meanwhile"
        ) from exc
    try:
        runs = await temporal()
        await runs.start(run_input(run, settings), summary=run.prompt, execute=body.start)
    except (RunyardError, ProblemError) as exc:
        await _discard(db, run_id, temporal, started=not isinstance(exc, OrchestratorUnavailable))
        log.warning("run.start_failed", run_id=run_id, org_id=principal.org_id, error=str(exc))
        if isinstance(exc, ProblemError):
            raise
        if exc.code == ErrorCode.RUN_ORCHESTRATOR_ERROR:
            raise ProblemError(
                502, exc.code, f"the workflow engine could not start the run: {exc}"
            ) from exc
        raise ProblemError.of(exc) from exc
    metrics.run_created()
    tracing.annotate(run_id=run_id, org_id=principal.org_id, model=run.model)
    if body.start:  # the workflow has made it pending: answer with the row as it is now
        fresh: Run | None = await db.read(lambda s: s.get(Run, run_id))
        run = fresh or run
    log.info(
        "run.created", run_id=run_id, workflow_id=run_id, org_id=principal.org_id, start=body.start
    )
    return run, False


async def _discard(
    db: Database, run_id: str, temporal: TemporalConnector, *, started: bool
) -> None:
    """Remove what a refused create made: the row, its events, and its workflow."""
    if started:
        try:
            await (await temporal()).discard(run_id, "the run's creation was refused")
        except (RunyardError, ProblemError) as exc:
            log.warning("run.discard_failed", run_id=run_id, error=str(exc))
    async with db.write() as s:
        await s.execute(delete(RunEvent).where(col(RunEvent.run_id) == run_id))
        await s.execute(delete(Run).where(col(Run.id) == run_id))
