"""The store's tables (SQLModel). The schema itself is created by the alembic migrations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from runyard.db.types import UTCDateTime, utcnow


def _json(**kw: Any) -> Any:
    return Field(sa_column=Column(JSON, nullable=kw.pop("nullable", True)), **kw)


def _ts(nullable: bool = True) -> Any:
    if nullable:
        return Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"
    id: str = Field(primary_key=True)
    name: str = Field(index=True, unique=True)
    # In credits (one credit = $0.001). NULL: credits are off, usage is metered only.
    credits_balance: int | None = Field(default=None, sa_column=Column(BigInteger(), nullable=True))
    created_at: datetime = _ts(nullable=False)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"
    id: str = Field(primary_key=True)
    org_id: str = Field(foreign_key="organizations.id", index=True)
    key_hash: str = Field(unique=True, index=True)
    name: str | None = None
    prefix: str
    scopes: list[str] = _json(default_factory=list)
    created_at: datetime = _ts(nullable=False)
    expires_at: datetime | None = _ts()
    # Kept current to within a minute by each API process, not written per request.
    last_used_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()


class CreditEntry(SQLModel, table=True):
    """The credit ledger: a grant (+) or one model turn's charge (-), with the balance after."""

    __tablename__ = "credit_ledger"
    __table_args__ = (Index("ix_credit_ledger_org_created", "org_id", "created_at"),)
    id: int | None = Field(default=None, primary_key=True)
    org_id: str = Field(foreign_key="organizations.id")
    # "grant.<random>" or "charge.<run id>.turn<n>": a retried turn is never charged twice.
    key: str = Field(unique=True)
    amount: int = Field(sa_column=Column(BigInteger(), nullable=False))
    balance_after: int = Field(sa_column=Column(BigInteger(), nullable=False))
    run_id: str | None = None
    created_at: datetime = _ts(nullable=False)


class RateLimitCounter(SQLModel, table=True):
    """Requests per key per one-minute window, shared by every API replica.

    Used on Postgres; a SQLite store keeps the same table in a file beside it
    (``api/ratelimit.counter_path``), so counting never invalidates the store's caches.
    """

    __tablename__ = "rate_limit_counters"
    bucket: str = Field(primary_key=True)  # "key_…" (an API key) or "run_…" (a token)
    minute: int = Field(primary_key=True)  # int(unix time // 60)
    hits: int = 0


class Template(SQLModel, table=True):
    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("org_id", "slug", name="uq_templates_org_slug"),)
    id: str = Field(primary_key=True)
    # NULL org_id: a system template, visible to every organization and read-only.
    org_id: str | None = Field(default=None, index=True)
    slug: str
    name: str
    size: str = "m"
    provider: str = "local"
    image: str | None = None
    env: dict[str, str] = _json(default_factory=dict)
    setup_script: str | None = None
    network: str = "none"  # "none" or "full"
    defaults: dict[str, Any] = _json(default_factory=dict)
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)
    # The default approval policy of its runs (``runyard.approvals.policy``), or None.
    approvals: dict[str, Any] | None = _json(default=None)


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("org_id", "idempotency_key", name="uq_runs_org_idempotency"),
        Index("ix_runs_org_created", "org_id", "created_at"),
        Index("ix_runs_org_status", "org_id", "status"),
    )
    id: str = Field(primary_key=True)
    org_id: str = Field(foreign_key="organizations.id")
    status: str
    prompt: str
    guidance: str | None = None
    repo: str | None = None
    template: str = "default"
    agent_id: str | None = None
    thread_id: str | None = Field(default=None, index=True)
    model: str
    guardrails: dict[str, Any] = _json(default_factory=dict)
    sandbox: dict[str, Any] | None = _json(default=None)
    outputs: list[dict[str, Any]] = _json(default_factory=list)
    usage: dict[str, Any] = _json(default_factory=dict)
    fail_reason: str | None = None
    error: dict[str, Any] | None = _json(default=None)
    metadata_: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("metadata", JSON, nullable=True)
    )
    env: dict[str, str] = _json(default_factory=dict)
    callback_url: str | None = None
    idempotency_key: str | None = None
    # The agent's instructions as they were when the run was created.
    instructions: str | None = None
    pending_question: str | None = None
    trace_id: str | None = None
    route_id: str | None = None
    persona_id: str | None = None
    workflow_id: str
    # The highest event seq handed out so far; events take last_seq + 1 in one transaction.
    last_seq: int = 0
    created_at: datetime = _ts(nullable=False)
    started_at: datetime | None = _ts()
    completed_at: datetime | None = _ts()
    failed_at: datetime | None = _ts()
    cancelled_at: datetime | None = _ts()
    updated_at: datetime = _ts(nullable=False)
    # A scheduled run: its schedule (sch_…) and the time the schedule fired it for.
    schedule_id: str | None = Field(default=None, index=True)
    scheduled_at: datetime | None = _ts()
    # Best-of-N and forks (issue 26): the runs created together share a group; a fork
    # says where it came from ({"runId", "turn", "restore"}).
    group_id: str | None = Field(default=None, index=True)
    forked_from: dict[str, Any] | None = _json(default=None)
    # {"policies": [template's, run's], "grants": [...]} (``runyard.approvals``), or None.
    approvals: dict[str, Any] | None = _json(default=None)
    # While waiting_for_input: "question" or "approval"; the approvals that wait.
    waiting_for: str | None = None
    pending_approvals: list[dict[str, Any]] | None = _json(default=None)
    # A close or an interrupt asked the run to stop at its next turn boundary. Written by
    # the workflow (``request_stop``) for the tool calls that run beside a model turn
    # (``activities/cycle.py``); the workflow's own state stays what decides.
    stop_requested_at: datetime | None = _ts()


class RunEvent(SQLModel, table=True):
    __tablename__ = "run_events"
    __table_args__ = (
        UniqueConstraint("run_id", "seq", name="uq_run_events_seq"),
        UniqueConstraint("run_id", "key", name="uq_run_events_key"),
    )
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id")
    seq: int
    # Idempotency key: a retried activity that appends the same event again is a no-op.
    key: str
    type: str
    data: dict[str, Any] = _json(default_factory=dict)
    created_at: datetime = _ts(nullable=False)


class RunMessage(SQLModel, table=True):
    """The run's transcript, one row per conversation message, so history stays small."""

    __tablename__ = "run_messages"
    __table_args__ = (UniqueConstraint("run_id", "key", name="uq_run_messages_key"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    # "turn3.assistant", "turn3.results": a retried activity finds its own work done.
    key: str
    role: str
    content: list[dict[str, Any]] = _json(default_factory=list)
    created_at: datetime = _ts(nullable=False)


class Thread(SQLModel, table=True):
    """A conversation that spans runs: each run sees the completed runs before it."""

    __tablename__ = "threads"
    id: str = Field(primary_key=True)
    org_id: str = Field(foreign_key="organizations.id", index=True)
    metadata_: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("metadata", JSON, nullable=True)
    )
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class Agent(SQLModel, table=True):
    __tablename__ = "agents"
    id: str = Field(primary_key=True)
    org_id: str = Field(foreign_key="organizations.id", index=True)
    name: str
    instructions: str
    model: str | None = None
    template: str | None = None
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class Webhook(SQLModel, table=True):
    """An organization's endpoint for run events, signed by the Standard Webhooks spec."""

    __tablename__ = "webhooks"
    __table_args__ = (UniqueConstraint("org_id", "url", name="uq_webhooks_org_url"),)
    id: str = Field(primary_key=True)
    org_id: str = Field(foreign_key="organizations.id", index=True)
    url: str
    events: list[str] = _json(default_factory=list)
    enabled: bool = True
    disabled_reason: str | None = None
    # Kept to sign with; the API shows it once. After a rotation the previous secret
    # also signs until previous_secret_expires_at.
    secret: str
    previous_secret: str | None = None
    previous_secret_expires_at: datetime | None = _ts()
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class WebhookDelivery(SQLModel, table=True):
    """One message to one URL and all its attempts; its Temporal workflow id is its id."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_deliveries_pending", "status", "workflow_started"),)
    id: str = Field(primary_key=True)
    org_id: str = Field(foreign_key="organizations.id", index=True)
    webhook_id: str | None = Field(default=None, index=True)
    run_id: str | None = Field(default=None, index=True)
    # "webhook" (signed, org endpoint), "callback" (the run's callbackUrl), "watcher"
    kind: str
    url: str
    event_type: str
    message_id: str
    payload: dict[str, Any] = _json(default_factory=dict)
    status: str = "pending"  # pending | delivered | failed | gone | forbidden | cancelled
    workflow_started: bool = False
    attempts: list[dict[str, Any]] = _json(default_factory=list)
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class RunWatcher(SQLModel, table=True):
    __tablename__ = "run_watchers"
    id: str = Field(primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    callback_url: str
    created_at: datetime = _ts(nullable=False)


class Artifact(SQLModel, table=True):
    """A file the agent saved (or ``changes.patch``); the bytes live in the ArtifactStore."""

    __tablename__ = "artifacts"
    __table_args__ = (
        Index("ix_artifacts_run_created", "run_id", "created_at"),
        UniqueConstraint("run_id", "storage_path", name="uq_artifacts_run_path"),
    )
    id: str = Field(primary_key=True)
    org_id: str = Field(foreign_key="organizations.id")
    run_id: str = Field(foreign_key="runs.id")
    name: str
    storage_path: str
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    content_type: str
    sha256: str
    created_at: datetime = _ts(nullable=False)


class RunUserMessage(SQLModel, table=True):
    """A message sent to a busy run (``POST /v1/runs/{id}/messages``): ``steer`` (read
    before the next model call) or ``queue`` (read when the agent would otherwise finish).
    ``status``: pending → delivered | cancelled (deleted by the client) | dropped (the
    run ended first)."""

    __tablename__ = "run_user_messages"
    __table_args__ = (Index("ix_run_user_messages_run_created", "run_id", "created_at"),)
    id: str = Field(primary_key=True)
    org_id: str = Field(foreign_key="organizations.id")
    run_id: str = Field(foreign_key="runs.id")
    content: str
    mode: str
    status: str
    turn: int | None = None  # the model turn that read it (delivered)
    created_at: datetime = _ts(nullable=False)
    delivered_at: datetime | None = _ts()


class ThreadRunOrder(SQLModel, table=True):
    """A run created in a thread with a ``multitaskStrategy``: its place in the thread's
    order (``position``, dense per thread, given under the thread's row lock), the run it
    waits behind, and the run it supersedes (``interrupt``/``rollback``)."""

    __tablename__ = "thread_run_orders"
    __table_args__ = (
        UniqueConstraint("thread_id", "position", name="uq_thread_run_orders_position"),
    )
    run_id: str = Field(primary_key=True, foreign_key="runs.id")
    thread_id: str = Field(foreign_key="threads.id", index=True)
    position: int
    strategy: str
    queued_behind: str | None = None
    supersedes: str | None = None
    created_at: datetime = _ts(nullable=False)


class Approval(SQLModel, table=True):
    """A tool call that waits for a person's decision (``runyard.approvals``)."""

    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint("run_id", "tool_call_id", name="uq_approvals_run_call"),
        Index("ix_approvals_run_turn", "run_id", "turn", "position"),
    )
    id: str = Field(primary_key=True)
    run_id: str = Field(foreign_key="runs.id")
    org_id: str = Field(foreign_key="organizations.id")
    turn: int
    # The call's place among its turn's calls: approvals list in the order the model made them.
    position: int = 0
    tool_call_id: str
    tool: str
    input: Any = _json(default=None)
    # The input a person gave instead ("edit"): the call runs with it.
    edited_input: Any = _json(default=None)
    rule: dict[str, Any] | None = _json(default=None)
    status: str = "pending"  # pending | approved | edited | denied | expired | cancelled
    decision: str | None = None
    message: str | None = None
    scope: str | None = None
    decided_by: str | None = None
    # The Idempotency-Key of the request that decided it.
    decision_key: str | None = None
    created_at: datetime = _ts(nullable=False)
    expires_at: datetime = _ts(nullable=False)
    decided_at: datetime | None = _ts()
