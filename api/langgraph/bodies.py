"""The LangGraph request bodies (snake_case, as the SDK sends them), and what a run asks.

Every field the SDK can send is declared: a field it cannot send is refused with 422
(``extra="forbid"``), never dropped. A declared field whose value Runyard does not serve
(an ``interrupt_before``, a ``webhook``, an ``after_seconds``
…) is refused with 501 by ``RunAsk.of``, saying which.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from api.errors import ProblemError
from api.langgraph.mapping import prompt_of
from api.schemas import Body
from runyard.domain import ErrorCode
from runyard.errors import InvalidInput, NotServed

StreamMode = Literal[
    "values", "messages", "updates", "events", "tasks", "checkpoints", "debug", "custom",
    "messages-tuple", "tools", "lifecycle",
]  # fmt: skip
# Served: "custom" too, which this graph never writes to (so it streams nothing).
SERVED_MODES = frozenset({"values", "messages", "messages-tuple", "updates", "custom"})
# What config.configurable and context carry: the run's create fields.
RUN_FIELDS = {
    "repo": "repo",
    "template": "template",
    "model": "model",
    "maxTurns": "max_turns",
    "maxCostUsd": "max_cost_usd",
    "timeoutSeconds": "timeout_seconds",
    "approvals": "approvals",  # the run's approval policy (runyard.approvals)
}
# RunnableConfig keys besides "configurable": known to LangGraph, not served here.
_CONFIG_KEYS = {"tags", "metadata", "recursion_limit", "run_name", "max_concurrency", "run_id"}


class LgBody(Body):
    model_config = ConfigDict(alias_generator=None, extra="forbid", populate_by_name=True)


class Command(LgBody):
    resume: Any = None
    goto: Any = None
    update: Any = None


class RunBody(LgBody):
    assistant_id: str = Field(min_length=1, max_length=200)
    input: dict[str, Any] | None = None
    command: Command | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    stream_mode: StreamMode | list[StreamMode] | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    feedback_keys: list[str] | None = None
    webhook: str | None = None
    checkpoint: dict[str, Any] | None = None
    checkpoint_id: str | None = None
    checkpoint_during: bool | None = None
    multitask_strategy: Literal["reject", "interrupt", "rollback", "enqueue"] | None = None
    if_not_exists: Literal["create", "reject"] | None = None
    on_disconnect: Literal["cancel", "continue"] | None = None
    on_completion: Literal["delete", "keep"] | None = None
    after_seconds: float | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    strict_resume: bool | None = None
    langsmith_tracer: dict[str, Any] | None = None


# A thread's metadata, as ``/v1/threads`` bounds it (a patch merges: the result too).
MAX_METADATA_BYTES = 16_384


def check_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and len(json.dumps(value)) > MAX_METADATA_BYTES:
        raise ValueError("metadata must serialise to at most 16 KiB of JSON")
    return value


class ThreadCreate(LgBody):
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] | None = None
    supersteps: list[Any] | None = None
    graph_id: str | None = None
    ttl: Any = None

    _metadata = field_validator("metadata")(check_metadata)


class ThreadPatch(LgBody):
    metadata: dict[str, Any] = Field(default_factory=dict)
    ttl: Any = None

    _metadata = field_validator("metadata")(check_metadata)


class ThreadSearch(LgBody):
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    ids: list[str] | None = Field(default=None, max_length=1000)
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: (
        Literal["thread_id", "status", "created_at", "updated_at", "state_updated_at"] | None
    ) = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None
    extract: dict[str, str] | None = None


class HistoryBody(LgBody):
    limit: int = Field(default=10, ge=1, le=1000)
    before: str | dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None
    select: list[str] | None = None


class StateCheckpointBody(LgBody):
    checkpoint: dict[str, Any]
    subgraphs: bool = False
    select: list[str] | None = None


class AssistantSearch(LgBody):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None


B = TypeVar("B", bound=BaseModel)


def unprocessable(errors: list[dict[str, str]], detail: str | None = None) -> ProblemError:
    text = detail or "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return ProblemError(422, ErrorCode.VALIDATION_FAILED, text, extra={"errors": errors})


def parse(model: type[B], raw: bytes) -> B:
    """``raw`` (JSON; empty: ``{}``) as ``model``, or 422 naming each field at fault."""
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ())) or "body"
            code = err.get("type", "invalid")
            message = (
                "not a field LangGraph's API takes" if code == "extra_forbidden" else err["msg"]
            )
            errors.append({"field": where, "message": message, "code": code})
        raise unprocessable(errors) from exc


def _served(condition: bool, what: str) -> None:
    if condition:
        raise NotServed(what)


@dataclass
class RunAsk:
    """What a run request asks, checked: a new prompt or an answer (``resume``), the
    run's create fields, the stream modes and the checkpoint it starts from."""

    assistant_id: str
    prompt: str | None
    resume: Any
    fields: dict[str, Any]
    metadata: dict[str, Any]
    modes: list[str]
    checkpoint_id: str | None
    multitask_strategy: str | None
    if_not_exists: str | None
    on_disconnect: str | None = None
    resuming: bool = field(default=False)

    @classmethod
    def of(cls, body: RunBody, *, stateless: bool) -> RunAsk:
        _served(bool(body.interrupt_before or body.interrupt_after),
                "interrupt_before/interrupt_after: nodes cannot be interrupted")  # fmt: skip
        _served(bool(body.feedback_keys), "feedback_keys (LangSmith feedback)")
        _served(body.webhook is not None, "webhook: use Runyard's webhooks or callbackUrl")
        _served(body.langsmith_tracer is not None, "langsmith_tracer")
        _served(bool(body.after_seconds), "after_seconds: delayed runs (schedules)")
        if stateless:
            _served(body.on_completion == "keep", "on_completion 'keep': a stateless run "
                    "has no thread to keep; create a thread")  # fmt: skip
        elif body.on_completion is not None:
            raise InvalidInput("only for stateless runs (POST /runs…)", field="on_completion")
        modes = modes_of(body.stream_mode)
        prompt, resume, resuming = None, None, False
        if body.command is not None:
            _served(body.command.goto is not None or body.command.update is not None,
                    "command.goto and command.update; command.resume is served")  # fmt: skip
            if "resume" not in body.command.model_fields_set:
                raise InvalidInput("needs 'resume'", field="command")
            if body.input:
                raise InvalidInput("give either input or command, not both", field="input")
            if stateless:
                raise InvalidInput("a stateless run has no interrupt to resume", field="command")
            resume, resuming = body.command.resume, True
        elif body.input is None:
            raise InvalidInput("needs input (or command to resume)", field="input")
        else:
            prompt = prompt_of(body.input)
        return cls(
            assistant_id=body.assistant_id,
            prompt=prompt,
            resume=resume,
            resuming=resuming,
            fields=_run_fields(body.config, body.context),
            metadata=body.metadata or {},
            modes=modes,
            checkpoint_id=_checkpoint_id(body),
            multitask_strategy=body.multitask_strategy,
            if_not_exists=body.if_not_exists,
            on_disconnect=body.on_disconnect,
        )


def modes_of(stream_mode: str | Sequence[str] | None) -> list[str]:
    """The stream modes asked for (default ``values``); 422 for an unknown one, 501 for
    one not served."""
    modes = [stream_mode] if isinstance(stream_mode, str) else list(stream_mode or [])
    modes = [m for m in modes if m] or ["values"]
    unknown = sorted(set(modes) - set(get_args(StreamMode)))
    if unknown:
        raise InvalidInput(f"unknown stream mode(s) {', '.join(unknown)}", field="stream_mode")
    unserved = sorted(set(modes) - SERVED_MODES)
    _served(bool(unserved), f"stream_mode {', '.join(unserved)}; served: "
            f"{', '.join(sorted(SERVED_MODES))}")  # fmt: skip
    return modes


def _checkpoint_id(body: RunBody) -> str | None:
    found = body.checkpoint_id
    if body.checkpoint:
        given = body.checkpoint.get("checkpoint_id")
        if given is not None and not isinstance(given, str):
            raise InvalidInput("must be a string", field="checkpoint.checkpoint_id")
        if found is not None and given is not None and given != found:
            raise InvalidInput("names another checkpoint than checkpoint_id", field="checkpoint")
        found = found or given
    return found


def _run_fields(config: dict[str, Any] | None, context: dict[str, Any] | None) -> dict[str, Any]:
    """The create fields of ``config.configurable`` and ``context`` (they must agree)."""
    config = dict(config or {})
    configurable = config.pop("configurable", None) or {}
    if not isinstance(configurable, dict):
        raise InvalidInput("must be an object", field="config.configurable")
    unknown = sorted(set(config) - _CONFIG_KEYS)
    if unknown:
        raise InvalidInput(
            f"unknown key(s) {', '.join(unknown)}", field="config", kind="extra_forbidden"
        )
    unserved = sorted(k for k, v in config.items() if v not in (None, [], {}))
    _served(bool(unserved), f"config {', '.join(unserved)}; config.configurable is served")
    fields: dict[str, Any] = {}
    for where, given in (("config.configurable", configurable), ("context", context or {})):
        for key, value in given.items():
            if key not in RUN_FIELDS:
                raise InvalidInput(
                    f"unknown key '{key}'; takes {', '.join(RUN_FIELDS)}",
                    field=f"{where}.{key}",
                    kind="extra_forbidden",
                )
            name = RUN_FIELDS[key]
            if name in fields and fields[name] != value:
                raise InvalidInput(
                    "config.configurable and context disagree", field=f"{where}.{key}"
                )
            fields[name] = value
    return fields
