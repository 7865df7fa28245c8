"""The ``data`` of each event type (API.md "Events"), one pydantic model per type.

Writers build these and append them with :meth:`EventData.event`; what is stored is the
model dumped by alias with only the fields that were set, so the JSON on the wire is what
the writers wrote before the models (a field left out stays out, no ``null`` appears).
Every model allows fields it does not name: a reader of an older or newer event keeps
them. This package imports no store: ``runyard.client`` reads events with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from runyard.domain import EventType


@dataclass(frozen=True)
class NewEvent:
    """An event to append (``runyard/store/events.py``): its key (``keys``), type, data."""

    key: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)


class EventData(BaseModel):
    """The fields are declared in the order the writers write them: a dump lists the
    declared fields first, then the others."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")
    TYPE: ClassVar[EventType]

    def event(self, key: str) -> NewEvent:
        """This data as an event to append under ``key`` (``runyard.events.keys``)."""
        return NewEvent(key, self.TYPE, self.model_dump(by_alias=True, exclude_unset=True))


class RunCreated(EventData):
    TYPE = EventType.RUN_CREATED
    status: str


class RunStarted(EventData):
    TYPE = EventType.RUN_STARTED


class SandboxReady(EventData):
    """The run object's ``sandbox``."""

    TYPE = EventType.SANDBOX_READY
    id: str
    provider: str
    size: str
    resources: dict[str, int]


class SandboxSetup(EventData):
    """A batch of the setup script's output; the last adds ``exitCode`` and ``timedOut``."""

    TYPE = EventType.SANDBOX_SETUP
    stream: str
    output: str
    exit_code: int | None = None
    timed_out: bool | None = None


class SandboxLost(EventData):
    TYPE = EventType.SANDBOX_LOST
    id: str
    reason: str


class MessageDelta(EventData):
    TYPE = EventType.MESSAGE_DELTA
    message_id: str
    text: str


class MessageCompleted(EventData):
    TYPE = EventType.MESSAGE_COMPLETED
    message_id: str
    text: str
    stop_reason: str | None = None


class ToolCall(EventData):
    TYPE = EventType.TOOL_CALL
    tool_call_id: str
    name: str
    input: dict[str, Any]


class ToolResult(EventData):
    TYPE = EventType.TOOL_RESULT
    tool_call_id: str
    output: str
    is_error: bool


class TurnRetried(EventData):
    """A model turn restarted: clients drop that message's partial deltas."""

    TYPE = EventType.TURN_RETRIED
    message_id: str
    attempt: int


class UsageUpdated(EventData):
    """The run's usage so far (the run object's ``usage``)."""

    TYPE = EventType.USAGE_UPDATED
    turns: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_hit_rate: int | float | None = None
    cost_usd: int | float | None = None
    credits_used: int | None = None


class RunWaitingForInput(EventData):
    TYPE = EventType.RUN_WAITING_FOR_INPUT
    question: str
    tool_call_id: str | None = None


class RunInputReceived(EventData):
    """An answer to ``ask_user`` (``toolCallId``) or a queued message (``queued``)."""

    TYPE = EventType.RUN_INPUT_RECEIVED
    tool_call_id: str | None = None
    content: Any = None
    queued: bool | None = None


class OutputDetected(EventData):
    """One output, as in the run object's ``outputs``."""

    TYPE = EventType.OUTPUT_DETECTED
    type: str


class GuardrailTriggered(EventData):
    TYPE = EventType.GUARDRAIL_TRIGGERED
    guardrail: str
    limit: float | int | None = None
    value: float | int | None = None


class RunCompleted(EventData):
    TYPE = EventType.RUN_COMPLETED
    status: str | None = None
    error: dict[str, Any] | None = None


class RunFailed(EventData):
    TYPE = EventType.RUN_FAILED
    fail_reason: str | None = None
    error: dict[str, Any] | None = None


class RunCancelled(EventData):
    TYPE = EventType.RUN_CANCELLED
    status: str | None = None
    error: dict[str, Any] | None = None


class MessageQueued(EventData):
    """A message to a busy run was accepted (``steer`` or ``queue``)."""

    TYPE = EventType.MESSAGE_QUEUED
    message_id: str
    mode: str
    content: str | None = None


class MessageDelivered(EventData):
    """The agent reads the message at model turn ``turn``."""

    TYPE = EventType.MESSAGE_DELIVERED
    message_id: str
    mode: str
    turn: int


class MessageDropped(EventData):
    """The run ended before the message was delivered."""

    TYPE = EventType.MESSAGE_DROPPED
    message_id: str
    mode: str


class ApprovalRequested(EventData):
    """A tool call waits for a person's decision (``runyard.approvals``)."""

    TYPE = EventType.APPROVAL_REQUESTED
    approval_id: str
    tool_call_id: str
    name: str
    input: Any = None
    rule: dict[str, Any] | None = None
    expires_at: str | None = None


class ApprovalResolved(EventData):
    TYPE = EventType.APPROVAL_RESOLVED
    approval_id: str
    # approve | edit | deny, or expired | cancelled when no person decided.
    decision: str
    decided_by: str | None = None
    scope: str | None = None


DATA_MODELS: dict[EventType, type[EventData]] = {
    m.TYPE: m
    for m in (
        RunCreated,
        RunStarted,
        SandboxReady,
        SandboxSetup,
        SandboxLost,
        MessageDelta,
        MessageCompleted,
        ToolCall,
        ToolResult,
        TurnRetried,
        UsageUpdated,
        RunWaitingForInput,
        RunInputReceived,
        OutputDetected,
        GuardrailTriggered,
        RunCompleted,
        RunFailed,
        RunCancelled,
        MessageQueued,
        MessageDelivered,
        MessageDropped,
        ApprovalRequested,
        ApprovalResolved,
    )
}
