"""A stored event as the API answers it: ``{"seq", "type", "data", "createdAt"}``, one
model per type, discriminated on ``type`` (:data:`AnyEvent`). The API's OpenAPI document
describes ``/events`` and ``/session-logs`` with these, and ``runyard.client`` reads
events with them (``Event.typed``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, TypeAdapter, WithJsonSchema
from pydantic.alias_generators import to_camel

from runyard.events import data as d

CreatedAt = Annotated[
    str,
    WithJsonSchema({"type": "string", "format": "date-time", "example": "2026-01-01T00:00:00Z"}),
]


class StoredEvent(BaseModel):
    """One event of a run; ``seq`` rises by exactly 1 per run."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")
    seq: int = Field(examples=[42])
    created_at: CreatedAt


class RunCreatedEvent(StoredEvent):
    type: Literal["run.created"]
    data: d.RunCreated


class RunStartedEvent(StoredEvent):
    type: Literal["run.started"]
    data: d.RunStarted


class SandboxReadyEvent(StoredEvent):
    type: Literal["sandbox.ready"]
    data: d.SandboxReady


class SandboxSetupEvent(StoredEvent):
    type: Literal["sandbox.setup"]
    data: d.SandboxSetup


class SandboxLostEvent(StoredEvent):
    type: Literal["sandbox.lost"]
    data: d.SandboxLost


class MessageDeltaEvent(StoredEvent):
    type: Literal["message.delta"]
    data: d.MessageDelta


class MessageCompletedEvent(StoredEvent):
    type: Literal["message.completed"]
    data: d.MessageCompleted


class ToolCallEvent(StoredEvent):
    type: Literal["tool.call"]
    data: d.ToolCall


class ToolResultEvent(StoredEvent):
    type: Literal["tool.result"]
    data: d.ToolResult


class TurnRetriedEvent(StoredEvent):
    type: Literal["turn.retried"]
    data: d.TurnRetried


class UsageUpdatedEvent(StoredEvent):
    type: Literal["usage.updated"]
    data: d.UsageUpdated


class RunWaitingForInputEvent(StoredEvent):
    type: Literal["run.waiting_for_input"]
    data: d.RunWaitingForInput


class RunInputReceivedEvent(StoredEvent):
    type: Literal["run.input_received"]
    data: d.RunInputReceived


class OutputDetectedEvent(StoredEvent):
    type: Literal["output.detected"]
    data: d.OutputDetected


class GuardrailTriggeredEvent(StoredEvent):
    type: Literal["guardrail.triggered"]
    data: d.GuardrailTriggered


class RunCompletedEvent(StoredEvent):
    type: Literal["run.completed"]
    data: d.RunCompleted


class RunFailedEvent(StoredEvent):
    type: Literal["run.failed"]
    data: d.RunFailed


class RunCancelledEvent(StoredEvent):
    type: Literal["run.cancelled"]
    data: d.RunCancelled


class MessageQueuedEvent(StoredEvent):
    type: Literal["message.queued"]
    data: d.MessageQueued


class MessageDeliveredEvent(StoredEvent):
    type: Literal["message.delivered"]
    data: d.MessageDelivered


class MessageDroppedEvent(StoredEvent):
    type: Literal["message.dropped"]
    data: d.MessageDropped


class ApprovalRequestedEvent(StoredEvent):
    type: Literal["approval.requested"]
    data: d.ApprovalRequested


class ApprovalResolvedEvent(StoredEvent):
    type: Literal["approval.resolved"]
    data: d.ApprovalResolved


AnyEvent = Annotated[
    RunCreatedEvent
    | RunStartedEvent
    | SandboxReadyEvent
    | SandboxSetupEvent
    | SandboxLostEvent
    | MessageDeltaEvent
    | MessageCompletedEvent
    | ToolCallEvent
    | ToolResultEvent
    | TurnRetriedEvent
    | UsageUpdatedEvent
    | RunWaitingForInputEvent
    | RunInputReceivedEvent
    | OutputDetectedEvent
    | GuardrailTriggeredEvent
    | RunCompletedEvent
    | RunFailedEvent
    | RunCancelledEvent
    | MessageQueuedEvent
    | MessageDeliveredEvent
    | MessageDroppedEvent
    | ApprovalRequestedEvent
    | ApprovalResolvedEvent,
    Field(discriminator="type"),
]
EVENTS: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


class Event(RootModel[AnyEvent]):
    """One event of a run, whichever its type: the API's ``Event`` schema (one of the
    models above, told apart by ``type``)."""
