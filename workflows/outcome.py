"""How a run's agent loop ends: the ``Outcome`` it hands ``RunWorkflow``, the guardrail
that ended it, the typed failure of an activity, and the request to continue as new."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from runyard.domain import ErrorCode, FailReason, RunStatus
    from workflows.payloads import Carried


@dataclass
class Outcome:
    status: RunStatus
    fail_reason: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    guardrail: dict[str, Any] | None = None
    superseded_by: str | None = None


def guardrail(reason: FailReason, name: str, limit: float, value: float) -> Outcome:
    return Outcome(
        RunStatus.FAILED,
        reason,
        guardrail={"guardrail": name, "limit": limit, "value": value},
    )


class ContinueAsNew(Exception):
    """Raised between two turns when the history has grown enough; ``RunWorkflow.run``
    continues the run as new with ``carried``."""

    def __init__(self, carried: Carried | None = None) -> None:
        super().__init__("continue as new")
        self.carried = carried


_CODES = frozenset(ErrorCode)


def cause_of(err: ActivityError | ApplicationError) -> ApplicationError:
    """The typed failure an activity raised (see ``runyard/errors.py``); a failed local
    activity raises it as it is, a remote one wraps it in an ``ActivityError``."""
    cause: BaseException | None = err
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError) and cause.type:
        if cause.type in _CODES:
            return ApplicationError(cause.message, type=cause.type, non_retryable=True)
        # Not a Runyard error: Temporal typed it with its Python class, which is no
        # contract code; the class goes in the message, error.code is INTERNAL_ERROR.
        message = f"{cause.type}: {cause.message}"
    else:
        message = str(cause or err)
    return ApplicationError(message, type=ErrorCode.INTERNAL_ERROR, non_retryable=True)
