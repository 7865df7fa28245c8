"""How the run workflow calls each kind of activity: timeouts and retries, given once.

Which errors are not retried is not said here: the activity's failure carries it
(``runyard/errors.py`` draws the hierarchy). These policies only bound the retries of
errors that may pass: a dead worker, a store away for a moment, a transient model error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, TimeoutType
from temporalio.exceptions import TimeoutError as ActivityTimeout

from workflows.payloads import SandboxRef


@dataclass(frozen=True)
class ActivityOptions:
    start_to_close: timedelta
    retry: RetryPolicy
    # Set for activities that heartbeat: a worker that died is noticed after this long.
    heartbeat: timedelta | None = None

    def remote(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for ``workflow.execute_activity_method``."""
        kw: dict[str, Any] = {"start_to_close_timeout": self.start_to_close}
        kw["retry_policy"] = self.retry
        if self.heartbeat is not None:
            kw["heartbeat_timeout"] = self.heartbeat
        return kw | extra

    def local(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for ``workflow.execute_local_activity_method``."""
        return {"start_to_close_timeout": self.start_to_close, "retry_policy": self.retry} | extra


_QUICK = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5)
_HEARTBEAT = timedelta(seconds=10)

# Store writes of the run's lifecycle (status, events, outputs): milliseconds each. They
# run as local activities, in the worker that runs the workflow task, with no task-queue
# round trip; if that worker dies mid-write the next workflow task runs them again.
LIFECYCLE = ActivityOptions(start_to_close=timedelta(seconds=15), retry=_QUICK)

PROVISION = ActivityOptions(
    start_to_close=timedelta(minutes=15),
    heartbeat=_HEARTBEAT,
    retry=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3),
)

# One model call. This is the only retry layer of a model call (the SDK's own retries are
# off), so every attempt after the first is visible as a ``turn.retried`` event.
MODEL_TURN = ActivityOptions(
    start_to_close=timedelta(minutes=15),
    heartbeat=_HEARTBEAT,
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=4,
    ),
)


def tool(tool_timeout_seconds: int) -> ActivityOptions:
    """One tool call: the command's own limit, and a minute for the rest."""
    return ActivityOptions(
        start_to_close=timedelta(seconds=tool_timeout_seconds + 60),
        heartbeat=_HEARTBEAT,
        retry=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3),
    )


def turn_and_tools(tool_timeout_seconds: int) -> ActivityOptions:
    """A model turn and its tool calls (``activities/cycle.py``): the model call's limit and
    one tool call's; the activity starts a call only while a whole call's limit is left.
    A retry finds the answer and the results already stored, so it takes the model
    turn's policy (rate limits back off up to 30 s)."""
    return ActivityOptions(
        start_to_close=MODEL_TURN.start_to_close + tool(tool_timeout_seconds).start_to_close,
        heartbeat=_HEARTBEAT,
        retry=MODEL_TURN.retry,
    )


COLLECT = ActivityOptions(start_to_close=timedelta(minutes=5), heartbeat=_HEARTBEAT, retry=_QUICK)
DESTROY = ActivityOptions(start_to_close=timedelta(minutes=5), heartbeat=_HEARTBEAT, retry=_QUICK)


# The template's setup script: the activity enforces RUNYARD_SETUP_TIMEOUT_SECONDS itself
# (at most 6 h); this only bounds a worker that stopped answering. A failing script is not
# retried (SANDBOX_SETUP_FAILED); an unreachable sandbox is.
SETUP = ActivityOptions(
    start_to_close=timedelta(hours=6, minutes=5),
    heartbeat=_HEARTBEAT,
    retry=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3),
)

# Pausing and resuming a waiting run's sandbox: quick, and never fatal to the run.
PAUSE = ActivityOptions(
    start_to_close=timedelta(seconds=30),
    retry=RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_attempts=3),
)


def on_host(sandbox: SandboxRef, lost_after_seconds: int) -> dict[str, Any]:
    """Where an activity that touches ``sandbox`` runs: the task queue of the host that
    holds it. If no worker of that host picks it up within ``lost_after_seconds`` the
    activity fails with a schedule-to-start timeout (never retried): the host is gone."""
    if sandbox.task_queue is None:
        return {}
    return {
        "task_queue": sandbox.task_queue,
        "schedule_to_start_timeout": timedelta(seconds=lost_after_seconds),
    }


def host_lost(err: BaseException) -> bool:
    """Whether an activity failed because the host of its sandbox did not pick it up."""
    return (
        isinstance(err, ActivityError)
        and isinstance(err.cause, ActivityTimeout)
        and err.cause.type == TimeoutType.SCHEDULE_TO_START
    )
