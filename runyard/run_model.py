"""The run object of the HTTP contract (API.md "Runs"), defined once.

The API renders it (``response_model``), ``runyard.store.run_view`` builds it from a run
row, and ``runyard.client`` parses answers into the same classes: camelCase on the wire,
snake_case in Python. Dumps use ``exclude_unset`` so that what was not written (an
output's fields that its type lacks) stays out rather than becoming ``null``.

A newer server never breaks an older client: unknown fields are kept (``extra="allow"``),
and when the client parses (validation context :data:`CLIENT`) a nullable field the server
left out reads ``None`` and a status this version does not know stays the plain string
(``RunStatus`` is a ``StrEnum``: it compares and prints alike). The server validates
without that context, so what it renders is held to the full schema.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from runyard.domain import FailReason, RunStatus

# The validation context a client parses answers with (see the module's docstring).
CLIENT: dict[str, Any] = {"runyard_client": True}

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})

# An RFC 3339 UTC time, passed through as written (``2026-01-01T00:00:00Z``).
Rfc3339 = Annotated[
    str,
    WithJsonSchema({"type": "string", "format": "date-time", "example": "2026-01-01T00:00:00Z"}),
]
# A JSON number, kept as written: ``5`` stays ``5`` (a float field said ``5.0``).
Number = Annotated[float | int, WithJsonSchema({"type": "number"})]
FailReasonName = Annotated[
    str, WithJsonSchema({"type": "string", "enum": [str(r) for r in FailReason]})
]


class ApiModel(BaseModel):
    """An object of the HTTP contract: camelCase on the wire, unknown fields kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _missing_reads_none(cls, data: Any, info: ValidationInfo) -> Any:
        """In a client, a nullable field a (newer) server left out reads ``None``."""
        if not _in_client(info) or not isinstance(data, dict):
            return data
        missing = {
            field.alias or name: None
            for name, field in cls.model_fields.items()
            if field.is_required()
            and _nullable(field.annotation)
            and (field.alias or name) not in data
            and name not in data
        }
        return {**data, **missing} if missing else data

    def wire(self) -> dict[str, Any]:
        """The JSON object as the API writes it (camelCase, only the fields that were set)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


RUN_EXAMPLE: dict[str, Any] = {
    "id": "run_3k9d0c2mzq1v8x7h5b4n",
    "object": "run",
    "status": "completed",
    "prompt": "Refactor the auth middleware to use JWT",
    "guidance": None,
    "repo": "your-org/your-repo",
    "template": "default",
    "agentId": None,
    "threadId": None,
    "model": "sonnet",
    "guardrails": {"maxTurns": 100, "maxCostUsd": 5, "timeoutSeconds": 1800},
    "sandbox": {
        "id": "sbx_7f3a",
        "provider": "local",
        "size": "m",
        "resources": {"cpuMillis": 2000, "memoryMi": 4096, "diskMi": 10240},
    },
    "outputs": [
        {"type": "text", "text": "Done: the middleware now checks JWTs."},
        {"type": "branch", "name": "agent/jwt", "sha": "4b825dc6", "url": "https://…"},
    ],
    "usage": {
        "turns": 7,
        "inputTokens": 1000,
        "outputTokens": 500,
        "cacheReadTokens": 400,
        "cacheWriteTokens": 0,
        "cacheHitRate": 0.2857,
        "costUsd": 0.005,
        "creditsUsed": 5,
    },
    "failReason": None,
    "error": None,
    "metadata": {},
    "pendingQuestion": None,
    "traceId": "trc_0f9e",
    "routeId": None,
    "personaId": None,
    "workflowId": "run_3k9d0c2mzq1v8x7h5b4n",
    "createdAt": "2026-01-01T00:00:00Z",
    "startedAt": "2026-01-01T00:00:01Z",
    "completedAt": "2026-01-01T00:00:04Z",
    "failedAt": None,
    "cancelledAt": None,
    "durationMs": 3200,
}


class Guardrails(ApiModel):
    max_turns: int | None
    max_cost_usd: Number | None
    timeout_seconds: int | None


class Resources(ApiModel):
    cpu_millis: int
    memory_mi: int
    disk_mi: int


class Sandbox(ApiModel):
    """What the template's size gives the run; ``id`` once the sandbox exists."""

    id: str | None = None
    provider: str | None = None
    size: str | None = None
    resources: Resources | None = None


class Output(ApiModel):
    """One output: ``type`` is ``text``, ``branch``, ``pr``, ``issue`` or ``patch``; the
    other fields depend on it."""

    type: str = Field(examples=["branch"])
    text: str | None = None
    name: str | None = None
    sha: str | None = None
    url: str | None = None
    number: int | None = None
    branch: str | None = None
    artifact_id: str | None = None
    files: int | None = None
    insertions: int | None = None
    deletions: int | None = None


class Usage(ApiModel):
    """Grows during the run; final once it is terminal."""

    turns: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_hit_rate: Number
    cost_usd: Number
    credits_used: int


class RunError(ApiModel):
    """Why a run failed with ``failReason: error`` (or expired)."""

    code: str = Field(examples=["MODEL_ERROR"])
    message: str | None = None


class ForkedFrom(ApiModel):
    """Where a fork started: the run and the turn boundary it was cut at."""

    run_id: str
    turn: int


class Run(ApiModel):
    """The run object."""

    model_config = ConfigDict(json_schema_extra={"examples": [RUN_EXAMPLE]})

    id: str
    object: str = Field(examples=["run"])
    status: RunStatus
    prompt: str
    guidance: str | None
    repo: str | None
    template: str
    agent_id: str | None
    thread_id: str | None
    model: str
    guardrails: Guardrails
    sandbox: Sandbox | None
    outputs: list[Output]
    usage: Usage
    fail_reason: FailReasonName | None
    error: RunError | None
    metadata: dict[str, Any]
    pending_question: str | None
    trace_id: str | None
    route_id: str | None
    persona_id: str | None
    workflow_id: str
    created_at: Rfc3339
    started_at: Rfc3339 | None
    completed_at: Rfc3339 | None
    failed_at: Rfc3339 | None
    cancelled_at: Rfc3339 | None
    duration_ms: int | None
    # A scheduled run: its schedule and the time the schedule fired it for.
    schedule_id: str | None = None
    scheduled_at: Rfc3339 | None = None
    # Issue 26: a fork's origin, and the group of runs created together (best-of-N).
    forked_from: ForkedFrom | None = None
    group_id: str | None = None
    # While waiting_for_input: "question" or "approval", and the approvals that wait.
    waiting_for: str | None = None
    pending_approvals: list[dict[str, Any]] | None = None

    @field_validator("status", mode="wrap")
    @classmethod
    def _newer_status(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        """In a client, a status a newer server added stays the plain string."""
        try:
            return handler(value)
        except ValidationError:
            if _in_client(info) and isinstance(value, str):
                return value
            raise

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def text(self) -> str | None:
        """The final answer: the text of the first ``text`` output, if any."""
        return next((o.text for o in self.outputs if o.type == "text"), None)


class Pagination(ApiModel):
    page: int = Field(examples=[1])
    limit: int = Field(examples=[20])
    total: int = Field(examples=[42])
    total_pages: int = Field(examples=[3])


class RunPage(ApiModel):
    data: list[Run]
    pagination: Pagination


class RunGroup(ApiModel):
    """The runs one request created together (a fork's attempts), in order."""

    data: list[Run]


class ExecAccepted(ApiModel):
    """The answer to exec: the run is ``pending``."""

    id: str
    status: RunStatus = Field(examples=["pending"])
    workflow_id: str
    message: str = Field(examples=["run accepted; the sandbox is being provisioned"])


def _in_client(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and bool(info.context.get("runyard_client"))


def _nullable(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)
