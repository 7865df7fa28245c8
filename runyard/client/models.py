"""The objects of the HTTP contract as the client sees them: pydantic models, camelCase on
the wire, snake_case in Python. Unknown fields are kept (``extra="allow"``), so a newer
server never breaks an older client. The run object, its page and exec's answer are the
API's own models (``runyard.run_model``), not copies."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError

from runyard.approvals.model import Approval, ApprovalList, ApprovalPage
from runyard.checkpoints.api_model import Checkpoint, CheckpointPage
from runyard.events import EVENTS, AnyEvent
from runyard.run_model import (
    TERMINAL_STATUSES,
    ApiModel,
    ExecAccepted,
    Guardrails,
    Output,
    Pagination,
    Run,
    RunError,
    RunGroup,
    RunPage,
    Usage,
)

__all__ = [
    "TERMINAL_EVENT_TYPES",
    "TERMINAL_STATUSES",
    "ApiModel",
    "Approval",
    "ApprovalList",
    "ApprovalPage",
    "Checkpoint",
    "CheckpointPage",
    "Event",
    "ExecAccepted",
    "FieldError",
    "Guardrails",
    "MessageAccepted",
    "Output",
    "Pagination",
    "Problem",
    "Run",
    "RunError",
    "RunErrorInfo",
    "RunGroup",
    "RunMessage",
    "RunMessagePage",
    "RunPage",
    "RunStatusInfo",
    "RunyardAPIError",
    "ThreadRunCreated",
    "Usage",
]

TERMINAL_EVENT_TYPES = frozenset({"run.completed", "run.failed", "run.cancelled"})

# ``error`` of a failed run, by its older client name.
RunErrorInfo = RunError


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


class MessageAccepted(ApiModel):
    """The answer to ``send_message``: ``pending`` (``delivered`` when it answered the
    question the run waited on)."""

    id: str
    status: str


class RunMessage(ApiModel):
    """A message sent to a busy run: ``steer`` or ``queue``; ``pending``, ``delivered``
    (at model turn ``turn``), ``cancelled`` or ``dropped`` (the run ended first)."""

    id: str
    run_id: str
    content: str
    mode: str
    status: str
    turn: int | None = None
    created_at: str
    delivered_at: str | None = None


class RunMessagePage(ApiModel):
    data: list[RunMessage]
    pagination: Pagination


class ThreadRunCreated(ApiModel):
    """The answer to ``create_thread_run``: ``queued_behind`` is set when the run waits
    for the runs before it in the thread (``enqueue``, ``interrupt``, ``rollback``)."""

    run_id: str
    trace_id: str | None = None
    status: str | None = None
    queued_behind: str | None = None
    supersedes: list[str] | None = None
