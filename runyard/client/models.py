"""The objects of the HTTP contract as the client sees them: pydantic models, camelCase on
the wire, snake_case in Python. Unknown fields are kept (``extra="allow"``), so a newer
server never breaks an older client."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from runyard.events import EVENTS, AnyEvent

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
TERMINAL_EVENT_TYPES = frozenset({"run.completed", "run.failed", "run.cancelled"})


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class Usage(ApiModel):
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_hit_rate: float = 0.0
    cost_usd: float = 0.0
    credits_used: int = 0


class Guardrails(ApiModel):
    max_turns: int | None = None
    max_cost_usd: float | None = None
    timeout_seconds: int | None = None


class RunErrorInfo(ApiModel):
    """``error`` of a failed run: ``code`` says what went wrong."""

    code: str
    message: str = ""


class Output(ApiModel):
    """One of a run's outputs: ``type`` is ``text``, ``branch``, ``pr``, ``issue`` or
    ``patch``; the other fields depend on it (``text``, ``url``, ``number`` …)."""

    type: str
    text: str | None = None
    url: str | None = None


class Run(ApiModel):
    """The run object."""

    id: str
    object: str = "run"
    status: str
    prompt: str = ""
    guidance: str | None = None
    repo: str | None = None
    template: str | None = None
    agent_id: str | None = None
    thread_id: str | None = None
    model: str | None = None
    guardrails: Guardrails = Field(default_factory=Guardrails)
    sandbox: dict[str, Any] | None = None
    outputs: list[Output] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    fail_reason: str | None = None
    error: RunErrorInfo | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    pending_question: str | None = None
    workflow_id: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    failed_at: str | None = None
    cancelled_at: str | None = None
    duration_ms: int | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def text(self) -> str | None:
        """The final answer: the text of the first ``text`` output, if any."""
        return next((o.text for o in self.outputs if o.type == "text"), None)


class Event(ApiModel):
    """One event of a run's stream; ``seq`` rises by exactly 1 per run."""

    seq: int
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_EVENT_TYPES

    @property
    def typed(self) -> AnyEvent | None:
        """This event as its type's model (the server's own, ``runyard.events``: ``data``
        with typed fields, e.g. ``event.typed.data.tool_call_id``); None for an event this
        client does not know (a newer server's type) or cannot read."""
        try:
            return EVENTS.validate_python(self.model_dump(by_alias=True))
        except ValidationError:
            return None


class Pagination(ApiModel):
    page: int
    limit: int
    total: int
    total_pages: int


class RunPage(ApiModel):
    data: list[Run]
    pagination: Pagination


class ExecAccepted(ApiModel):
    """The answer to exec: the run is ``pending``."""

    id: str
    status: str
    workflow_id: str | None = None
    message: str = ""


class RunStatusInfo(ApiModel):
    """The answer to cancel (``id``, ``status``) and ``GET /status``."""

    id: str
    status: str
    fail_reason: str | None = None
    duration_ms: int | None = None
    usage: Usage | None = None


class FieldError(ApiModel):
    field: str
    message: str = ""
    code: str = ""


class Problem(ApiModel):
    """An RFC 9457 problem document: ``type`` is the machine code."""

    type: str
    title: str = ""
    status: int = 0
    detail: str = ""
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] = Field(default_factory=list)


class RunyardAPIError(Exception):
    """Every failure of a client call: a problem answer of the API, or (``status`` 0,
    ``type`` ``CONNECTION_ERROR``) an API that could not be reached."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail or problem.title or problem.type)
        self.problem = problem

    @property
    def code(self) -> str:
        return self.problem.type

    @property
    def status(self) -> int:
        return self.problem.status

    def __str__(self) -> str:
        p = self.problem
        head = f"{p.type} ({p.status})" if p.status else p.type
        return f"{head}: {p.detail or p.title}"
