"""The single-argument models of the run workflow, its messages and its activities.

Every field added later gets a default, so histories recorded before it still decode.
Only ids and small summaries travel through Temporal: the transcript stays in the store.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio.common import SearchAttributeKey

WORKFLOW_NAME = "RunWorkflow"
# Keyword search attributes kept current, so the Temporal UI lists runs like the API does.
SA_STATUS = SearchAttributeKey.for_keyword("RunyardStatus")
SA_ORG = SearchAttributeKey.for_keyword("RunyardOrgId")
SA_MODEL = SearchAttributeKey.for_keyword("RunyardModel")
SA_TEMPLATE = SearchAttributeKey.for_keyword("RunyardTemplate")


class Guardrails(BaseModel):
    max_turns: int = 100
    max_cost_usd: float = 5.0
    timeout_seconds: int = 1800


class RunInput(BaseModel):
    run_id: str
    org_id: str
    model: str
    template: str = "default"
    guardrails: Guardrails = Field(default_factory=Guardrails)
    start: bool = False
    queued_ttl_seconds: int = 24 * 3600
    tool_timeout_seconds: int = 600
    # How long a run may wait for an answer; waiting does not use timeoutSeconds.
    input_wait_seconds: int = 24 * 3600


class ExecInput(BaseModel):
    pass


class ExecResult(BaseModel):
    status: str = "pending"


class CancelInput(BaseModel):
    reason: str | None = None


class InputUpdate(BaseModel):
    content: str


class InputResult(BaseModel):
    ok: bool = True


class CloseInput(BaseModel):
    pass


class RunState(BaseModel):
    """What the ``state`` query answers: the workflow's own view of the run."""

    status: str
    turns: int = 0
    cost_usd: float = 0.0
    detail: str = ""


class SandboxRef(BaseModel):
    sandbox_id: str
    provider: str = "local"


class ProvisionInput(BaseModel):
    run_id: str


class AnswerInput(BaseModel):
    run_id: str
    turn: int
    call_id: str
    content: str


class TurnInput(BaseModel):
    run_id: str
    turn: int
    sandbox: SandboxRef
    # An answer to ask_user not yet stored: the activity records it before its own work,
    # which saves the answer a round trip of its own.
    answer: AnswerInput | None = None


class ToolCallRef(BaseModel):
    id: str
    name: str


class TurnResult(BaseModel):
    turn: int
    tool_calls: list[ToolCallRef] = Field(default_factory=list)
    # Totals over the run so far, for the guardrail checks.
    turns: int = 0
    cost_usd: float = 0.0


class ToolInput(BaseModel):
    run_id: str
    turn: int
    call_id: str
    name: str
    sandbox: SandboxRef
    answer: AnswerInput | None = None


class ToolResult(BaseModel):
    call_id: str
    is_error: bool = False


class RunRef(BaseModel):
    run_id: str


class WaitInput(BaseModel):
    run_id: str
    turn: int
    call_id: str


class DestroyInput(BaseModel):
    run_id: str
    sandbox: SandboxRef


class FinishInput(BaseModel):
    run_id: str
    status: str
    fail_reason: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    # For a guardrail failure: which limit, its value and what the run reached.
    guardrail: dict[str, float | int | str] | None = None


class FinishResult(BaseModel):
    status: str
