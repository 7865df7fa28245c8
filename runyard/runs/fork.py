"""A fork (issue 26): a new run that starts where another stood at the end of one of its
turns — its conversation, its code, or both — created through ``RunService`` with a
``ForkSeed``. The source is only read: it may still be running.

The conversation is cut at the turn boundary (after that turn's tool results, so no tool
call is left open) and copied into the fork as its first messages. The code is the
source's latest checkpoint up to that turn, restored when the fork's sandbox is
provisioned (``runyard.checkpoints.restore``). What the source did outside its sandbox
(pushed branches, pull requests, issues) stays done: a fork pushes to its own branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.orm import Session

from runyard.checkpoints.store import code_at, last_boundary
from runyard.db.engine import Database
from runyard.db.tables import Run
from runyard.errors import InvalidInput, ProviderKeyMissing
from runyard.llm.pricing import is_valid_model, needs_anthropic_key
from runyard.runs.service import ForkSeed
from runyard.runs.spec import Guardrails, RunSpec, SandboxSpec
from runyard.settings import Settings
from runyard.store.transcript import conversation

Restore = Literal["both", "conversation", "code"]


@dataclass(frozen=True)
class ForkOptions:
    turn: int
    restore: Restore = "both"
    prompt: str | None = None
    model: str | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None


Message = tuple[str, tuple[dict[str, Any], ...]]


def _messages(convo: list[dict[str, Any]]) -> tuple[Message, ...]:
    out: list[Message] = []
    for m in convo:
        content = m["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        out.append((str(m["role"]), tuple(blocks)))
    return tuple(out)


def _plan(s: Session, source: Run, opts: ForkOptions, settings: Settings) -> tuple[Message, ...]:
    """The checks that read the store, and the fork's seeded conversation."""
    last = last_boundary(s, source.id)
    if not 1 <= opts.turn <= last:
        where = f"1 to {last}" if last else "none yet"
        raise InvalidInput(
            f"turn {opts.turn} is not a turn boundary of {source.id} (forkable turns: {where})",
            field="turn",
            kind="out_of_range",
        )
    if opts.restore in ("both", "code"):
        code_at(s, source, opts.turn, settings.checkpoint_retention_days)  # 410 if gone
    if opts.restore == "code":
        return ()
    seeded = list(_messages(conversation(s, source, until_turn=opts.turn)))
    if opts.prompt is not None:
        seeded.append(("user", ({"type": "text", "text": opts.prompt},)))
    elif seeded and seeded[-1][0] == "assistant":
        raise InvalidInput(
            f"turn {opts.turn} ended with the agent's final answer: a fork from there "
            "needs a prompt",
            field="prompt",
            kind="missing",
        )
    return tuple(seeded)


def _check_model(model: str, settings: Settings) -> None:
    if not is_valid_model(model):
        raise InvalidInput(f"unknown model '{model}'", field="model", kind="invalid_model")
    if needs_anthropic_key(model) and not settings.anthropic_api_key:
        raise ProviderKeyMissing(f"model '{model}' needs ANTHROPIC_API_KEY")


async def plan_fork(
    db: Database, settings: Settings, source: Run, opts: ForkOptions
) -> tuple[RunSpec, ForkSeed]:
    """The fork's ``RunSpec`` (the source's, with the fork's changes) and its seed."""
    model = opts.model or source.model
    if opts.model is not None:
        _check_model(model, settings)
    seeded = await db.read(lambda s: _plan(s, source, opts, settings))
    box = source.sandbox or {}
    spec = RunSpec(
        org_id=source.org_id,
        prompt=opts.prompt if opts.prompt is not None else source.prompt,
        model=model,
        template=source.template,
        guardrails=Guardrails.model_validate(source.guardrails),
        sandbox=SandboxSpec(
            provider=str(box.get("provider", "local")),
            size=str(box.get("size", "m")),
            resources=dict(box.get("resources") or {}),
        ),
        env=dict(source.env or {}),
        repo=source.repo,
        guidance=source.guidance,
        agent_id=source.agent_id,
        instructions=source.instructions,
        metadata=opts.metadata if opts.metadata is not None else dict(source.metadata_ or {}),
        idempotency_key=opts.idempotency_key,
        route_id=source.route_id,
        persona_id=source.persona_id,
        forked_from={"runId": source.id, "turn": opts.turn, "restore": opts.restore},
        # The source's approval policies (its template's and its own, as stored): a fork
        # never runs a call its source would have had to ask about. The source's
        # run-scoped grants were for that run ("the rest of the run"): not carried.
        approvals=({**source.approvals, "grants": []} if source.approvals is not None else None),
    )
    return spec, ForkSeed(seeded)
