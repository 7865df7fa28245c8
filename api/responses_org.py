"""Response models of the organization's resources (API.md "Threads" to "Usage, keys")
and of ``/healthz``. Field order is the order the routes write."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from api.responses import Number, Out, Rfc3339
from api.responses_runs import Pagination, Resources, Run


class Thread(Out):
    id: str = Field(examples=["thr_2b8x"])
    object: str = Field(examples=["thread"])
    metadata: dict[str, Any]
    created_at: Rfc3339
    updated_at: Rfc3339


class ThreadRunCreated(Out):
    run_id: str = Field(examples=["run_3k9d0c2mzq1v8x7h5b4n"])
    trace_id: str | None
    status: str | None = Field(default=None, examples=["queued"])
    queued_behind: str | None = Field(
        default=None, description="enqueue/interrupt/rollback: the run it starts after"
    )
    supersedes: list[str] | None = Field(
        default=None, description="interrupt/rollback: the runs it stops"
    )


class ThreadRuns(Out):
    data: list[Run]
    pagination: Pagination


class Agent(Out):
    id: str = Field(examples=["agt_4m1q"])
    object: str = Field(examples=["agent"])
    name: str = Field(examples=["reviewer"])
    instructions: str = Field(examples=["Review the change and list the risks."])
    model: str | None
    template: str | None
    created_at: Rfc3339
    updated_at: Rfc3339


class AgentPage(Out):
    data: list[Agent]
    pagination: Pagination


class Defaults(Out):
    """What a run that leaves these out gets from the template."""

    model: str | None = None
    max_turns: int | None = None
    max_cost_usd: Number | None = None
    timeout_seconds: int | None = None


class Template(Out):
    id: str = Field(examples=["tpl_8d3f"])
    object: str = Field(examples=["template"])
    slug: str = Field(examples=["python-m"])
    name: str
    system: bool = Field(description="A system template (read-only), such as default.")
    size: str = Field(examples=["m"], description="s, m, l or xl")
    resources: Resources | None
    provider: str = Field(examples=["local"], description="local or e2b")
    image: str | None
    env: dict[str, str]
    setup_script: str | None
    network: str = Field(examples=["none"], description="none or full")
    defaults: Defaults
    created_at: Rfc3339 | None
    updated_at: Rfc3339 | None
    approvals: dict[str, Any] | None = Field(
        default=None, description="The default approval policy of its runs."
    )


class TemplatePage(Out):
    data: list[Template]
    pagination: Pagination


class Webhook(Out):
    id: str = Field(examples=["whk_6t2r"])
    object: str = Field(examples=["webhook"])
    url: str = Field(examples=["https://example.com/hooks/runyard"])
    events: list[str] = Field(examples=[["run.completed", "run.failed"]])
    enabled: bool
    disabled_reason: str | None
    created_at: Rfc3339
    updated_at: Rfc3339


class WebhookWithSecret(Webhook):
    """Create's answer: the signing secret, shown once."""

    secret: str = Field(examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])


class WebhookRotated(WebhookWithSecret):
    previous_secret_expires_at: Rfc3339 | None


class WebhookPage(Out):
    data: list[Webhook]
    pagination: Pagination


class Delivery(Out):
    id: str = Field(examples=["dlv_1x9a"])
    object: str = Field(examples=["delivery"])
    webhook_id: str | None
    run_id: str | None
    event_type: str = Field(examples=["run.completed"])
    message_id: str
    url: str
    status: str = Field(
        examples=["delivered"], description="pending, delivered, failed, gone or forbidden"
    )
    attempts: list[dict[str, Any]]
    created_at: Rfc3339
    updated_at: Rfc3339


class DeliveryPage(Out):
    data: list[Delivery]
    pagination: Pagination


class ApiKey(Out):
    id: str = Field(examples=["key_0c7w"])
    object: str = Field(examples=["api_key"])
    name: str | None
    scopes: list[str] = Field(examples=[["runs:read", "runs:write"]])
    prefix: str = Field(examples=["ry_live_AbC1"])
    created_at: Rfc3339
    expires_at: Rfc3339 | None
    last_used_at: Rfc3339 | None
    revoked_at: Rfc3339 | None


class ApiKeyCreated(Out):
    """Create's answer: ``key`` is shown here only."""

    id: str = Field(examples=["key_0c7w"])
    object: str = Field(examples=["api_key"])
    name: str | None
    scopes: list[str] = Field(examples=[["runs:read", "runs:write"]])
    prefix: str = Field(examples=["ry_live_AbC1"])
    created_at: Rfc3339
    expires_at: Rfc3339 | None
    key: str = Field(examples=["ry_live_AbC1…"])


class ApiKeyPage(Out):
    data: list[ApiKey]
    pagination: Pagination


class RunCounts(Out):
    total: int
    active: int
    completed: int
    failed: int
    cancelled: int


class UsageReport(Out):
    """The organization's usage over ``[from, to)``; ``creditsBalance`` null: unlimited."""

    object: str = Field(examples=["usage"])
    credits_balance: int | None
    credits_used: int
    cost_usd: Number
    input_tokens: int
    output_tokens: int
    runs: RunCounts
    from_: Rfc3339 = Field(alias="from")
    to: Rfc3339


class Health(Out):
    """Each part ``ok``, or ``error: …`` (and the status 503)."""

    status: str = Field(examples=["ok"], description="ok or degraded")
    database: str = Field(examples=["ok"])
    temporal: str = Field(examples=["ok"])
