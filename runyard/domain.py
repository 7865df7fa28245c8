"""The run's vocabulary, once: statuses, fail reasons, event types and error codes.

Every module that names a status, an event type or an error code imports it from here,
so a typo is a name error, not a silent mismatch. They are ``StrEnum`` members: they
compare equal to, and serialize as, the plain strings of the HTTP contract.

Where each error code comes from and how it is handled is drawn in ``runyard/errors.py``.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    PENDING = "pending"
    RUNNING = "running"
    WAITING_FOR_INPUT = "waiting_for_input"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
# Runs that count against the organization's active-run cap.
ACTIVE_STATUSES = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.WAITING_FOR_INPUT})
# Runs that still hold their thread (one open run per thread).
OPEN_STATUSES = frozenset({RunStatus.QUEUED, *ACTIVE_STATUSES})


class FailReason(StrEnum):
    MAX_TURNS = "max_turns"
    MAX_COST = "max_cost"
    TIMEOUT = "timeout"
    ERROR = "error"


class EventType(StrEnum):
    RUN_CREATED = "run.created"
    RUN_STARTED = "run.started"
    SANDBOX_READY = "sandbox.ready"
    SANDBOX_SETUP = "sandbox.setup"
    SANDBOX_LOST = "sandbox.lost"  # its host died; a new sandbox follows (sandbox.ready)
    MESSAGE_DELTA = "message.delta"
    MESSAGE_COMPLETED = "message.completed"
    TOOL_CALL = "tool.call"
    TOOL_RESULT = "tool.result"
    TURN_RETRIED = "turn.retried"
    USAGE_UPDATED = "usage.updated"
    RUN_WAITING_FOR_INPUT = "run.waiting_for_input"
    RUN_INPUT_RECEIVED = "run.input_received"
    OUTPUT_DETECTED = "output.detected"
    GUARDRAIL_TRIGGERED = "guardrail.triggered"
    RUN_COMPLETED = "run.completed"
    RUN_FAILED = "run.failed"
    RUN_CANCELLED = "run.cancelled"
    # Messages to a busy run (``POST /v1/runs/{id}/messages``).
    MESSAGE_QUEUED = "message.queued"
    MESSAGE_DELIVERED = "message.delivered"
    MESSAGE_DROPPED = "message.dropped"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_RESOLVED = "approval.resolved"


TERMINAL_EVENT_TYPES = frozenset(
    {EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELLED}
)


def terminal_event(status: RunStatus) -> EventType:
    return EventType(f"run.{status.value}")


class ErrorCode(StrEnum):
    """Machine codes: the ``type`` of a problem document, a run's ``error.code``, and the
    ``type`` of the ``ApplicationError`` an activity or workflow handler raises."""

    # Requests (problem documents).
    AUTH_UNAUTHORIZED = "AUTH_UNAUTHORIZED"
    API_KEY_INVALID = "API_KEY_INVALID"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    VALIDATION_FAILED = "VALIDATION_FAILED"
    BAD_REQUEST = "BAD_REQUEST"
    CONFLICT = "CONFLICT"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    CALLBACK_URL_FORBIDDEN = "CALLBACK_URL_FORBIDDEN"
    EVENTS_EXPIRED = "EVENTS_EXPIRED"
    RUN_NOT_FOUND = "RUN_NOT_FOUND"
    AGENT_NOT_FOUND = "AGENT_NOT_FOUND"
    THREAD_NOT_FOUND = "THREAD_NOT_FOUND"
    WEBHOOK_NOT_FOUND = "WEBHOOK_NOT_FOUND"
    REPOSITORY_NOT_FOUND = "REPOSITORY_NOT_FOUND"
    RUN_TEMPLATE_NOT_FOUND = "RUN_TEMPLATE_NOT_FOUND"
    RUN_API_KEY_REQUIRED = "RUN_API_KEY_REQUIRED"
    RUN_ALREADY_STARTED = "RUN_ALREADY_STARTED"
    RUN_NOT_WAITING_FOR_INPUT = "RUN_NOT_WAITING_FOR_INPUT"
    CONCURRENT_RUN_LIMIT_EXCEEDED = "CONCURRENT_RUN_LIMIT_EXCEEDED"
    USAGE_INSUFFICIENT_CREDITS = "USAGE_INSUFFICIENT_CREDITS"
    WEBHOOK_URL_DUPLICATE = "WEBHOOK_URL_DUPLICATE"
    WEBHOOK_LIMIT_EXCEEDED = "WEBHOOK_LIMIT_EXCEEDED"
    RUN_ORCHESTRATOR_ERROR = "RUN_ORCHESTRATOR_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    # A run's ending (error.code).
    RUN_EXPIRED = "RUN_EXPIRED"
    RUN_RESOURCE_LIMIT_EXCEEDED = "RUN_RESOURCE_LIMIT_EXCEEDED"
    SANDBOX_UNAVAILABLE = "SANDBOX_UNAVAILABLE"
    SANDBOX_SETUP_FAILED = "SANDBOX_SETUP_FAILED"
    MODEL_ERROR = "MODEL_ERROR"
    # Worker-side only: the run ended (cancelled) while an activity was on its way.
    RUN_NOT_ACTIVE = "RUN_NOT_ACTIVE"
    # A LangGraph route or field (/lg) that Runyard does not serve: 501.
    NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
    # Messages to a busy run.
    MESSAGE_NOT_FOUND = "MESSAGE_NOT_FOUND"
    MESSAGE_ALREADY_DELIVERED = "MESSAGE_ALREADY_DELIVERED"
    RUN_TURN_MISMATCH = "RUN_TURN_MISMATCH"
    # A run's ending (error.code): a thread's newer run interrupted it.
    # Schedules (issue 27): requests, and the error.code of a run cancel_other replaced.
    SCHEDULE_SPEC_INVALID = "SCHEDULE_SPEC_INVALID"
    SCHEDULE_NOT_FOUND = "SCHEDULE_NOT_FOUND"
    SCHEDULE_LIMIT_EXCEEDED = "SCHEDULE_LIMIT_EXCEEDED"
    RUN_SUPERSEDED = "RUN_SUPERSEDED"
    # A checkpoint past its retention (or never kept: larger than the bound).
    CHECKPOINT_EXPIRED = "CHECKPOINT_EXPIRED"
    # Tool-call approvals (runyard.approvals).
    APPROVAL_NOT_FOUND = "APPROVAL_NOT_FOUND"
    APPROVAL_ALREADY_DECIDED = "APPROVAL_ALREADY_DECIDED"
    APPROVAL_NOT_PENDING = "APPROVAL_NOT_PENDING"
    APPROVAL_TIMEOUT = "APPROVAL_TIMEOUT"
