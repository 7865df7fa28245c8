"""Response models of the run routes (API.md "Runs"): the run object and what exec,
cancel, watch, input, events and artifacts answer. Field order is the order the routes
write, so the JSON they answer is what it was before the models."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, WithJsonSchema

from api.responses import Number, Out, Rfc3339
from runyard.domain import FailReason, RunStatus

FailReasonName = Annotated[
    str, WithJsonSchema({"type": "string", "enum": [str(r) for r in FailReason]})
]

_RUN_EXAMPLE: dict[str, Any] = {
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


class Guardrails(Out):
    max_turns: int | None
    max_cost_usd: Number | None
    timeout_seconds: int | None


class Resources(Out):
    cpu_millis: int
    memory_mi: int
    disk_mi: int


class Sandbox(Out):
    """What the template's size gives the run; ``id`` once the sandbox exists."""

    id: str | None = None
    provider: str | None = None
    size: str | None = None
    resources: Resources | None = None


class Output(Out):
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


class Usage(Out):
    """Grows during the run; final once it is terminal."""

    turns: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_hit_rate: Number
    cost_usd: Number
    credits_used: int


class RunError(Out):
    """Why a run failed with ``failReason: error`` (or expired)."""

    code: str = Field(examples=["MODEL_ERROR"])
    message: str | None = None


class Run(Out):
    """The run object."""

    model_config = {"json_schema_extra": {"examples": [_RUN_EXAMPLE]}}

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


class Pagination(Out):
    page: int = Field(examples=[1])
    limit: int = Field(examples=[20])
    total: int = Field(examples=[42])
    total_pages: int = Field(examples=[3])


class RunPage(Out):
    data: list[Run]
    pagination: Pagination


class RunStatusView(Out):
    """``GET /v1/runs/{id}/status``: cheap enough to poll."""

    id: str
    status: RunStatus
    fail_reason: FailReasonName | None
    duration_ms: int | None
    usage: Usage


class ExecAccepted(Out):
    id: str
    status: RunStatus = Field(examples=["pending"])
    workflow_id: str
    message: str = Field(examples=["run accepted; the sandbox is being provisioned"])


class CancelResult(Out):
    id: str
    status: RunStatus = Field(examples=["cancelled"])


class Watcher(Out):
    id: str = Field(examples=["wch_5d1k"])
    run_id: str
    callback_url: str = Field(examples=["https://example.com/hooks/runyard"])
    created_at: Rfc3339


class InputAccepted(Out):
    ok: bool = Field(examples=[True])


class RpcError(Out):
    code: int = Field(examples=[-32601])
    message: str
    data: Any = None


class RpcResponse(Out):
    """A JSON-RPC 2.0 response: ``result`` or ``error``."""

    jsonrpc: str = Field(examples=["2.0"])
    result: dict[str, Any] | None = None
    error: RpcError | None = None
    id: str | int | None


class ConnectionToken(Out):
    token: str
    expires_at: Rfc3339


class Artifact(Out):
    id: str = Field(examples=["art_9c2e"])
    object: str = Field(examples=["artifact"])
    name: str = Field(examples=["report.md"])
    storage_path: str
    size: int
    content_type: str | None
    sha256: str
    created_at: Rfc3339


class ArtifactPage(Out):
    data: list[Artifact]
    pagination: Pagination


class PresignedUrl(Out):
    url: str
    expires_at: Rfc3339
