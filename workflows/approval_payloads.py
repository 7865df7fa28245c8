"""What crosses Temporal for tool-call approvals (``workflows/approvals.py``): the
``decide`` update and the approval activities. Fields added later get defaults."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class GateInput(BaseModel):
    run_id: str
    turn: int
    call_ids: list[str]


class GateResult(BaseModel):
    pending: list[str] = Field(default_factory=list)  # approval ids the turn waits for
    pending_calls: list[str] = Field(default_factory=list)  # the tool call of each pending
    refused: list[str] = Field(default_factory=list)  # call ids denied by a rule: not run
    timeout_seconds: int = 86_400
    on_timeout: str = "deny"


class Decision(BaseModel):
    id: str
    decision: Literal["approve", "edit", "deny"]
    input: Any = None
    message: str | None = None
    scope: Literal["once", "run"] = "once"


class DecideRequest(BaseModel):
    decisions: list[Decision]
    decided_by: str
    # The request's Idempotency-Key, if any.
    key: str | None = None


class DecideResult(BaseModel):
    decided: list[str] = Field(default_factory=list)  # approvals this update decided


class RecordInput(BaseModel):
    run_id: str
    request: DecideRequest


class ExpireInput(BaseModel):
    run_id: str
    approval_ids: list[str]
