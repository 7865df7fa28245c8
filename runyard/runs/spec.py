"""``RunSpec``: a run as creation resolved it, before it exists; and ``resolve``, which
checks a request against the store and the settings and fills in what it left out (from
the agent, the template's defaults, the operator's defaults)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlalchemy.orm import Session

from runyard.approvals.policy import ApprovalPolicy
from runyard.db.engine import Database
from runyard.db.tables import Agent, Template, Thread
from runyard.errors import (
    AgentNotFound,
    InvalidInput,
    ProviderKeyMissing,
    TemplateNotFound,
    ThreadNotFound,
)
from runyard.llm.pricing import is_valid_model, needs_anthropic_key
from runyard.runs.checks import check_address, check_repo
from runyard.sandbox.base import SIZES
from runyard.settings import Settings
from runyard.store.templates import find_template


class RunRequest(Protocol):
    """What a caller asks for (the API's ``CreateRun`` is one); ``None``: not said."""

    prompt: str
    repo: str | None
    template: str
    agent_id: str | None
    thread_id: str | None
    model: str | None
    guidance: str | None
    env: dict[str, str]
    max_turns: int | None
    max_cost_usd: float | None
    timeout_seconds: int | None
    callback_url: str | None
    metadata: dict[str, Any]
    # Optional: ``approvals`` (an ``ApprovalPolicy``) tightens the template's policy.

    @property
    def model_fields_set(self) -> set[str]: ...


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class Guardrails(_Camel):
    """The run's limits; stored (and shown) as ``{maxTurns, maxCostUsd, timeoutSeconds}``."""

    max_turns: int
    max_cost_usd: int | float
    timeout_seconds: int


class SandboxSpec(_Camel):
    """What the template's size gives the sandbox; its id is added once it exists."""

    provider: str
    size: str
    resources: dict[str, Any]

    @classmethod
    def of(cls, template: Template) -> SandboxSpec:
        return cls(provider=template.provider, size=template.size, resources=SIZES[template.size])

    def stored(self) -> dict[str, Any]:
        return {"id": None, **self.model_dump()}


class RunSpec(_Camel):
    """Everything ``create`` needs; every field checked and every default applied."""

    org_id: str
    prompt: str
    model: str
    template: str
    guardrails: Guardrails
    sandbox: SandboxSpec
    env: dict[str, str] = Field(default_factory=dict)
    repo: str | None = None
    guidance: str | None = None
    agent_id: str | None = None
    instructions: str | None = None
    callback_url: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = None
    route_id: str | None = None
    persona_id: str | None = None
    # A scheduled run: the schedule that fired it and the time it fired for.
    schedule_id: str | None = None
    scheduled_at: datetime | None = None
    # Best-of-N attempts and forks share a group; a fork says where it came from.
    group_id: str | None = None
    forked_from: dict[str, Any] | None = None
    # {"policies": [the template's, the run's], "grants": []}, or None: nothing is gated.
    approvals: dict[str, Any] | None = None


_Found = tuple[Agent | None, str, Template | None]


def _lookups(request: RunRequest, org_id: str) -> Callable[[Session], _Found]:
    def read(s: Session) -> _Found:
        agent: Agent | None = None
        if request.agent_id is not None:
            agent = s.get(Agent, request.agent_id)
            if agent is None or agent.org_id != org_id:
                raise AgentNotFound(f"no agent {request.agent_id}")
        if request.thread_id is not None:
            thread = s.get(Thread, request.thread_id)
            if thread is None or thread.org_id != org_id:
                raise ThreadNotFound(f"no thread {request.thread_id}")
        slug = request.template
        if "template" not in request.model_fields_set and agent is not None and agent.template:
            slug = agent.template
        return agent, slug, find_template(s, org_id, slug)

    return read


async def resolve(
    request: RunRequest,
    org_id: str,
    *,
    db: Database,
    settings: Settings,
    idempotency_key: str | None = None,
    route_id: str | None = None,
    persona_id: str | None = None,
) -> RunSpec:
    """Check ``request`` for ``org_id`` (template, agent, thread, model and its key,
    guardrails, callbackUrl, repo, in that order) and resolve it into a ``RunSpec``."""
    agent, slug, template = await db.read(_lookups(request, org_id))
    if template is None:
        raise TemplateNotFound(f"no template '{slug}'")
    if template.provider == "e2b" and not settings.e2b_api_key:
        raise InvalidInput(
            f"template '{slug}' runs its sandbox on E2B, and this server has no E2B_API_KEY",
            field="template",
            kind="provider_unavailable",
        )
    defaults = template.defaults or {}
    model = request.model or (agent.model if agent else None) or defaults.get("model") or "sonnet"
    _check_model(model, settings)
    guardrails = _guardrails(request, defaults, settings)
    if request.callback_url is not None:
        await check_address(request.callback_url, settings)
    if request.repo is not None:
        await check_repo(request.repo, settings)
    return RunSpec(
        org_id=org_id,
        prompt=request.prompt,
        model=model,
        template=slug,
        guardrails=guardrails,
        sandbox=SandboxSpec.of(template),
        # The template's env under the run's (run wins), as the run resolved it now.
        env={**(template.env or {}), **request.env},
        repo=request.repo,
        guidance=request.guidance,
        agent_id=request.agent_id,
        instructions=agent.instructions if agent else None,
        callback_url=request.callback_url,
        metadata=request.metadata,
        idempotency_key=idempotency_key,
        route_id=route_id,
        persona_id=persona_id,
        approvals=_approvals(template, getattr(request, "approvals", None)),
    )


def _approvals(template: Template, run: ApprovalPolicy | None) -> dict[str, Any] | None:
    """The run's approval policies: the template's and the run's own; both decide each
    call and the stricter answer wins, so the run's can only tighten."""
    policies = [ApprovalPolicy.model_validate(template.approvals)] if template.approvals else []
    if run is not None:
        policies.append(run)
    return {"policies": [p.wire() for p in policies], "grants": []} if policies else None


def _check_model(model: str, settings: Settings) -> None:
    if not is_valid_model(model):
        raise InvalidInput(
            f"unknown model '{model}': use sonnet, opus, haiku, scripted, "
            "a claude-… model id or anthropic/<id>",
            field="model",
            kind="invalid_model",
        )
    if needs_anthropic_key(model) and not settings.anthropic_api_key:
        raise ProviderKeyMissing(
            f"model '{model}' needs ANTHROPIC_API_KEY, which this server does not have; "
            "use model 'scripted' to run without a key"
        )


def _guardrails(request: RunRequest, defaults: dict[str, Any], settings: Settings) -> Guardrails:
    """The run's, else the template's defaults, else the operator's defaults."""
    timeout = (
        request.timeout_seconds
        or defaults.get("timeoutSeconds")
        or settings.default_timeout_seconds
    )
    if timeout < settings.min_timeout_seconds:
        raise InvalidInput(
            f"must be at least {settings.min_timeout_seconds}",
            field="timeoutSeconds",
            kind="greater_than_equal",
        )
    return Guardrails(
        max_turns=request.max_turns or defaults.get("maxTurns") or settings.default_max_turns,
        max_cost_usd=request.max_cost_usd
        or defaults.get("maxCostUsd")
        or settings.default_max_cost_usd,
        timeout_seconds=timeout,
    )
