"""A run's ``error.code`` holds only the contract's codes (API.md), never the class name
of an exception that no Runyard error wraps."""

from __future__ import annotations

from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from runyard.domain import ErrorCode
from workflows.outcome import cause_of


def _activity_failure(cause: ApplicationError) -> ActivityError:
    err = ActivityError(
        "activity failed",
        scheduled_event_id=1,
        started_event_id=2,
        identity="w",
        activity_type="collect_outputs",
        activity_id="1",
        retry_state=RetryState.MAXIMUM_ATTEMPTS_REACHED,
    )
    err.__cause__ = cause
    return err


def test_a_contract_code_is_kept() -> None:
    cause = ApplicationError("over its memory", type=ErrorCode.RUN_RESOURCE_LIMIT_EXCEEDED)
    got = cause_of(_activity_failure(cause))
    assert got.type == "RUN_RESOURCE_LIMIT_EXCEEDED" and got.message == "over its memory"


def test_an_exception_class_name_is_never_a_code() -> None:
    for name in ("ToolError", "OverflowError", "KeyError"):
        got = cause_of(_activity_failure(ApplicationError("it broke", type=name)))
        assert got.type == ErrorCode.INTERNAL_ERROR, got.type
        assert got.message == f"{name}: it broke"
    assert cause_of(ApplicationError("no type")).type == ErrorCode.INTERNAL_ERROR
