"""The background workflows on the time-skipping test server, with fake activities under
the real activity names: DeliveryWorkflow (the retry schedule, ``Retry-After``, a final
answer ends it, a cancel while it sleeps), the outbox pump, the sandbox reaper and event
retention. Waits of hours are skipped, so the file runs in seconds."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType as HistoryEvent
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    TimeoutError,
    TimeoutType,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.reaper import ReapResult
from activities.retention import PurgeResult
from notifications.delivery import DeliveryWorkflow
from notifications.messages import AttemptInput, AttemptOutcome, DeliveryInput, PumpInput
from notifications.outbox import cancel_delivery_workflows
from notifications.pump import OutboxPumpWorkflow, pump_workflow_id
from runyard.settings import Settings
from workflows.reaper import ReapInput, SandboxReaperWorkflow
from workflows.retention import EventRetentionWorkflow


def _queue() -> str:
    return "bg-" + secrets.token_hex(4)


@asynccontextmanager
async def worker(
    env: WorkflowEnvironment, workflow: type, acts: Sequence[Callable[..., Any]], queue: str
) -> AsyncIterator[None]:
    async with Worker(env.client, task_queue=queue, workflows=[workflow], activities=acts):
        yield


async def timers(handle: WorkflowHandle[Any, Any]) -> list[float]:
    """The seconds of every timer the workflow started, in order."""
    history = await handle.fetch_history()
    return [
        e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
        for e in history.events
        if e.event_type == HistoryEvent.EVENT_TYPE_TIMER_STARTED
    ]


# --- DeliveryWorkflow --------------------------------------------------------------------


class Receiver:
    """``attempt_delivery`` answering from a script of outcomes, then as a receiver that
    keeps failing does: ``retry``, and ``failed`` on the last attempt."""

    def __init__(self, *outcomes: AttemptOutcome) -> None:
        self.outcomes = list(outcomes)
        self.attempts: list[AttemptInput] = []

    @activity.defn(name="attempt_delivery")
    async def attempt_delivery(self, inp: AttemptInput) -> AttemptOutcome:
        self.attempts.append(inp)
        if self.outcomes:
            return self.outcomes.pop(0)
        return AttemptOutcome(status="failed" if inp.last else "retry")


RETRY = AttemptOutcome(status="retry")


async def deliver(
    env: WorkflowEnvironment, receiver: Receiver, schedule: list[float]
) -> tuple[str, list[float]]:
    queue = _queue()
    async with worker(env, DeliveryWorkflow, [receiver.attempt_delivery], queue):
        handle = await env.client.start_workflow(
            DeliveryWorkflow.run,
            DeliveryInput(delivery_id="dlv_" + secrets.token_hex(6), schedule=schedule),
            id="dlv_" + secrets.token_hex(6),
            task_queue=queue,
        )
        status = await handle.result()
        return status, await timers(handle)


async def test_delivery_follows_the_configured_schedule(env: WorkflowEnvironment) -> None:
    """The default RUNYARD_WEBHOOK_RETRY_SCHEDULE: ten attempts over about two days, each
    with its number, the last marked last; then the delivery has failed."""
    schedule = Settings().webhook_retry_delays
    receiver = Receiver()
    status, waits = await deliver(env, receiver, schedule)
    assert status == "failed"
    assert [a.attempt for a in receiver.attempts] == list(range(1, len(schedule) + 1))
    assert [a.last for a in receiver.attempts] == [False] * (len(schedule) - 1) + [True]
    assert waits == [gap for gap in schedule if gap > 0]  # a 0 is no timer: at once


async def test_a_short_gap_is_waited_and_no_gap_is_not(env: WorkflowEnvironment) -> None:
    schedule = Settings(webhook_retry_schedule="0, 0.5, 0, 2").webhook_retry_delays
    status, waits = await deliver(env, Receiver(), schedule)
    assert status == "failed" and waits == [0.5, 2]


async def test_delivery_stops_at_the_first_final_answer(env: WorkflowEnvironment) -> None:
    for final in ("delivered", "gone", "forbidden", "cancelled"):
        receiver = Receiver(RETRY, AttemptOutcome(status=final))
        status, waits = await deliver(env, receiver, [0, 5, 300, 1800])
        assert status == final
        assert len(receiver.attempts) == 2 and waits == [5]


async def test_retry_after_only_lengthens_the_next_wait(env: WorkflowEnvironment) -> None:
    receiver = Receiver(
        AttemptOutcome(status="retry", retry_after=120),  # longer than 5: waits 120
        AttemptOutcome(status="retry", retry_after=10),  # shorter than 300: waits 300
        AttemptOutcome(status="retry", retry_after=10 * 24 * 3600),  # capped at a day
        AttemptOutcome(status="delivered"),
    )
    status, waits = await deliver(env, receiver, [0, 5, 300, 60])
    assert status == "delivered"
    assert waits == [120, 300, 24 * 3600]


async def test_a_cancelled_delivery_ends_while_it_sleeps(env: WorkflowEnvironment) -> None:
    """Deleting a webhook cancels its deliveries' workflows (issue 23 item 22): one asleep
    until its next attempt a day away ends now, without another attempt."""
    receiver = Receiver(RETRY)
    queue = _queue()
    delivery_id = "dlv_" + secrets.token_hex(6)
    async with worker(env, DeliveryWorkflow, [receiver.attempt_delivery], queue):
        handle = await env.client.start_workflow(
            DeliveryWorkflow.run,
            DeliveryInput(delivery_id=delivery_id, schedule=[0, 86400, 86400]),
            id=delivery_id,
            task_queue=queue,
        )
        while await timers(handle) == []:  # asleep before attempt 2
            await asyncio.sleep(0.05)
        await cancel_delivery_workflows(env.client, [delivery_id])
        with pytest.raises(WorkflowFailureError) as err:
            await handle.result()
        assert isinstance(err.value.cause, CancelledError)
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    assert [a.attempt for a in receiver.attempts] == [1]
    # One already ended (or never started) is fine: nothing raised, nothing to do.
    await cancel_delivery_workflows(env.client, [delivery_id, "dlv_never_started"])


# --- the outbox pump ---------------------------------------------------------------------


class Outbox:
    """``pump_outbox`` that fails its first ``failures`` sweeps, then returns at once."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sweeps: list[PumpInput] = []

    @activity.defn(name="pump_outbox")
    async def pump_outbox(self, inp: PumpInput) -> None:
        self.sweeps.append(inp)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the store is away")


async def test_the_pump_sweeps_and_continues_as_new(env: WorkflowEnvironment) -> None:
    """A hundred sweeps per Temporal run, then a new run with the same input, under the
    one fixed id per task queue; a failing sweep is retried, not the end of the pump."""
    outbox = Outbox(failures=3)
    queue = _queue()
    inp = PumpInput(seconds=1.5, every=0.5)
    async with worker(env, OutboxPumpWorkflow, [outbox.pump_outbox], queue):
        handle = await env.client.start_workflow(
            OutboxPumpWorkflow.run, inp, id=pump_workflow_id(queue), task_queue=queue
        )
        for _ in range(600):  # bounded: a pump that stopped fails the test, not hangs it
            if len(outbox.sweeps) >= 3 + 100 + 1:
                break
            await env.sleep(1)
        first = env.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
        assert (await first.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
        history = await first.fetch_history()
        scheduled = [
            e
            for e in history.events
            if e.event_type == HistoryEvent.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]
        assert len(scheduled) == 100
        latest = await env.client.get_workflow_handle(handle.id).describe()
        assert latest.status == WorkflowExecutionStatus.RUNNING
        assert latest.run_id != handle.first_execution_run_id
        await env.client.get_workflow_handle(handle.id).terminate()
    assert {s.model_dump_json() for s in outbox.sweeps} == {inp.model_dump_json()}
    assert pump_workflow_id(queue) != pump_workflow_id(queue + "x")


# --- the sandbox reaper ------------------------------------------------------------------


class Reaper:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.queues: list[str] = []

    @activity.defn(name="reap_sandboxes")
    async def reap_sandboxes(self) -> ReapResult:
        self.queues.append(activity.info().task_queue)
        if self.failures:
            self.failures -= 1
            raise ApplicationError("a provider failed")
        return ReapResult(reaped=2, kept=1)


async def test_the_reaper_runs_on_its_hosts_queue(env: WorkflowEnvironment) -> None:
    reaper = Reaper(failures=1)
    queue, host = _queue(), _queue()
    async with (
        worker(env, SandboxReaperWorkflow, [], queue),
        Worker(env.client, task_queue=host, activities=[reaper.reap_sandboxes]),
    ):
        handle = await env.client.start_workflow(
            SandboxReaperWorkflow.run,
            ReapInput(task_queue=host, seconds=300),
            id="reap-" + secrets.token_hex(4),
            task_queue=queue,
        )
        # Bounded: a round sent to the wrong queue would wait there, unskipped.
        result = await asyncio.wait_for(handle.result(), 60)
    assert result == ReapResult(reaped=2, kept=1)
    assert reaper.queues == [host, host]  # one failure is tried again


async def test_the_reaper_without_a_host_runs_on_its_own_queue(env: WorkflowEnvironment) -> None:
    reaper = Reaper()
    queue = _queue()
    async with worker(env, SandboxReaperWorkflow, [reaper.reap_sandboxes], queue):
        result = await env.client.execute_workflow(
            SandboxReaperWorkflow.run, id="reap-" + secrets.token_hex(4), task_queue=queue
        )
    assert result.reaped == 2 and reaper.queues == [queue]


async def test_a_round_for_a_host_that_is_gone_gives_up(env: WorkflowEnvironment) -> None:
    """No worker polls the host's queue: the round ends after one interval instead of
    waiting forever (a new round starts on the schedule anyway). The test server does not
    skip time while an activity is outstanding, so the interval here is one real second."""
    queue = _queue()
    async with worker(env, SandboxReaperWorkflow, [], queue):
        handle = await env.client.start_workflow(
            SandboxReaperWorkflow.run,
            ReapInput(task_queue="gone-" + secrets.token_hex(4), seconds=1),
            id="reap-" + secrets.token_hex(4),
            task_queue=queue,
        )
        with pytest.raises(WorkflowFailureError) as err:
            await handle.result()
    activity_error = err.value.cause
    assert isinstance(activity_error, ActivityError)
    cause = activity_error.cause
    assert isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START


async def test_the_reaper_gives_up_after_two_failures(env: WorkflowEnvironment) -> None:
    reaper = Reaper(failures=5)
    queue = _queue()
    async with worker(env, SandboxReaperWorkflow, [reaper.reap_sandboxes], queue):
        with pytest.raises(WorkflowFailureError):
            await env.client.execute_workflow(
                SandboxReaperWorkflow.run, id="reap-" + secrets.token_hex(4), task_queue=queue
            )
    assert len(reaper.queues) == 2


# --- event retention ---------------------------------------------------------------------


class Retention:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0

    @activity.defn(name="purge_expired_events")
    async def purge_expired_events(self) -> PurgeResult:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise ApplicationError("the store is away")
        return PurgeResult(deleted=7)


@pytest.mark.parametrize(("failures", "calls", "ok"), [(2, 3, True), (3, 3, False)])
async def test_retention_purges_with_three_tries(
    env: WorkflowEnvironment, failures: int, calls: int, ok: bool
) -> None:
    retention = Retention(failures=failures)
    queue = _queue()
    async with worker(env, EventRetentionWorkflow, [retention.purge_expired_events], queue):
        handle = await env.client.start_workflow(
            EventRetentionWorkflow.run, id="ret-" + secrets.token_hex(4), task_queue=queue
        )
        if ok:
            assert await handle.result() == PurgeResult(deleted=7)
        else:
            with pytest.raises(WorkflowFailureError):
                await handle.result()
    assert retention.calls == calls
