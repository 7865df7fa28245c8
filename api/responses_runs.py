"""Response models of the run routes (API.md "Runs"): what status, cancel, watch, input,
events and artifacts answer. The run object itself (and its page, and exec's answer) is
defined once in ``runyard.run_model``, shared with ``runyard.client``; it is re-exported
here for the routes."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from api.responses import Out, Rfc3339
from runyard.domain import RunStatus
from runyard.run_model import (
    ExecAccepted,
    FailReasonName,
    Guardrails,
    Output,
    Pagination,
    Resources,
    Run,
    RunError,
    RunPage,
    Sandbox,
    Usage,
)

__all__ = [
    "Artifact",
    "ArtifactPage",
    "CancelResult",
    "ConnectionToken",
    "ExecAccepted",
    "Guardrails",
    "InputAccepted",
    "Output",
    "Pagination",
    "PresignedUrl",
    "Resources",
    "RpcError",
    "RpcResponse",
    "Run",
    "RunError",
    "RunPage",
    "RunStatusView",
    "Sandbox",
    "Usage",
    "Watcher",
]


class RunStatusView(Out):
    """``GET /v1/runs/{id}/status``: cheap enough to poll."""

    id: str
    status: RunStatus
    fail_reason: FailReasonName | None
    duration_ms: int | None
    usage: Usage


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
