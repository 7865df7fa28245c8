"""What crosses Temporal: the single argument and result of the run workflow, its updates
and signals, and its activities.

Every field added later gets a default, so histories recorded before it still decode.
Only ids and small summaries travel through Temporal: the transcript stays in the store.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from temporalio.common import SearchAttributeKey

from runyard.domain import RunStatus
from workflows.message_payloads import PendingMessage

# Keyword search attributes kept current, so the Temporal UI lists runs like the API does.
SA_STATUS = SearchAttributeKey.for_keyword("RunyardStatus")
SA_ORG = SearchAttributeKey.for_keyword("RunyardOrgId")
SA_MODEL = SearchAttributeKey.for_keyword("RunyardModel")
SA_TEMPLATE = SearchAttributeKey.for_keyword("RunyardTemplate")


# -- the workflow ------------------------------------------------------------------------


class Guardrails(BaseModel):
    max_turns: int = 100
    max_cost_usd: float = 5.0
    timeout_seconds: int = 1800


class SandboxRef(BaseModel):
    sandbox_id: str
    provider: str = "local"
    # The task queue of the host that holds a local sandbox (None: any worker, e.g. E2B).
    task_queue: str | None = None
    # 0 for the run's first sandbox, n after it was rebuilt n times (a lost host).
    generation: int = 0


class Carried(BaseModel):
    """What a run hands to its next Temporal run when it continues as new (between two
    turns, nothing in flight): the run id, its events and its status do not change."""

    turn: int
    turns: int = 0
    cost_usd: float = 0.0
    budget_seconds: float
    sandbox: SandboxRef
    close_requested: bool = False
    # Messages to the run not delivered yet (``workflows/messages.py``).
    messages: list[PendingMessage] = Field(default_factory=list)


class RunInput(BaseModel):
    run_id: str
    org_id: str
    model: str
    template: str = "default"
    guardrails: Guardrails = Field(default_factory=Guardrails)
    queued_ttl_seconds: int = 24 * 3600
    tool_timeout_seconds: int = 600
    # How long a run may wait for an answer; waiting does not use timeoutSeconds.
    input_wait_seconds: int = 24 * 3600
    # The organization's active-run cap, checked atomically when the run starts.
    max_active_runs: int = 10
    # Continue as new once the history holds this many events (Temporal's limit is 51,200).
    continue_as_new_events: int = 10_000
    # A sandbox host that has not picked up an activity this long is taken for dead.
    host_lost_seconds: int = 60
    carried: Carried | None = None
    # The run's thread: when the run ends, the next run waiting in it starts.
    thread_id: str | None = None
    # The run has an approval policy: its tool calls are gated (workflows/approvals.py).
    approvals: bool = False
    # The run has a repository: its turn boundaries are checkpointed (workflows/checkpoints.py);
    # a run without one has no worktree to snapshot and pays no activity per turn for it.
    has_repo: bool = False


class RunResult(BaseModel):
    status: str


class ExecRequest(BaseModel):
    pass


class ExecResult(BaseModel):
    status: str = RunStatus.PENDING


class CancelRequest(BaseModel):
    pass


class CancelResult(BaseModel):
    """The run's status after the cancel: ``cancelled``, or the status it had already
    ended with. It is final either way."""

    status: str


class AnswerRequest(BaseModel):
    content: str


class AnswerResult(BaseModel):
    ok: bool = True


class MessageRequest(BaseModel):
    content: str


class MessageResult(BaseModel):
    delivered: str  # "answer": it answered the waiting question; "queued": read next turn


class CloseRequest(BaseModel):
    pass


# -- activities ------------------------------------------------------------------------


class RunRef(BaseModel):
    run_id: str


class ProvisionInput(BaseModel):
    run_id: str
    generation: int = 0  # > 0: a rebuild after the sandbox's host was lost


class StartInput(BaseModel):
    run_id: str
    max_active_runs: int


class SandboxInfo(BaseModel):
    """The run object's ``sandbox`` field, as provisioning found it."""

    ref: SandboxRef
    size: str
    resources: dict[str, int]
    # The template has a setup script: the workflow runs ``setup_sandbox`` once.
    setup: bool = False


class ReadyInput(BaseModel):
    run_id: str
    sandbox: SandboxInfo


class ReplaceInput(BaseModel):
    """A lost sandbox and the one built to replace it."""

    run_id: str
    lost: SandboxRef
    sandbox: SandboxInfo


class TurnInput(BaseModel):
    run_id: str
    turn: int
    # Added to the activity's attempt: a turn run again after the host that ran it was
    # lost numbers its attempts (and their deltas' keys) after the lost ones.
    attempt_base: int = 0


class ToolCallRef(BaseModel):
    id: str
    name: str


class TurnResult(BaseModel):
    turn: int
    tool_calls: list[ToolCallRef] = Field(default_factory=list)
    # Totals over the run so far, for the guardrail checks.
    turns: int = 0
    cost_usd: float = 0.0
    # The calls ``run_turn_and_tools`` ran (their results are stored), in order; the
    # workflow runs the others itself.
    ran: list[str] = Field(default_factory=list)


class CycleInput(BaseModel):
    """A model turn and the tool calls it asks for, on the sandbox's host
    (``activities/cycle.py``)."""

    run_id: str
    turn: int
    sandbox: SandboxRef
    max_cost_usd: float  # no call runs once the run's cost is over it
    tool_timeout_seconds: int  # a call starts only with a whole run_tool's limit left


class ToolInput(BaseModel):
    run_id: str
    turn: int
    call_id: str
    name: str
    sandbox: SandboxRef


class CollectInput(BaseModel):
    run_id: str
    sandbox: SandboxRef
    # False for a run that did not complete: keep its unpushed work, not a final text.
    include_text: bool = True
    # False for a cancelled run: nothing is forwarded upstream, the work is only kept.
    forward: bool = True


class WaitInput(BaseModel):
    run_id: str
    turn: int
    call_id: str


class AnswerInput(BaseModel):
    run_id: str
    turn: int
    call_id: str
    content: str


class NoteInput(BaseModel):
    run_id: str
    content: str
    # The update's id: a retried local activity stores the note once.
    key: str


class SandboxCall(BaseModel):
    """One call about a run's sandbox: its setup script, pause, resume."""

    run_id: str
    sandbox: SandboxRef
    org_id: str = ""  # for the logs


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
    guardrail: dict[str, Any] | None = None
    # RUN_SUPERSEDED: the run that superseded this one (``error.supersededBy``).
    superseded_by: str | None = None


class FinishResult(BaseModel):
    """The run's final status (the first terminal write wins) and how it ended."""

    status: str
    fail_reason: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @classmethod
    def of(cls, status: str, fail_reason: str | None, error: dict[str, Any] | None) -> FinishResult:
        """From a run's ``status``, ``failReason`` and ``error`` as the store keeps them."""
        err = error or {}
        return cls(
            status=status,
            fail_reason=fail_reason,
            error_code=err.get("code"),
            error_message=err.get("message"),
        )


class ScheduleReplaceRequest(BaseModel):
    """A schedule's newer fire replaces this run (overlap ``cancel_other``): it ends
    ``cancelled`` with ``error.code: RUN_SUPERSEDED``."""

    reason: str = "a newer fire of its schedule replaced it"
