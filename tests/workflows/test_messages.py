"""Messages to a busy run (``RunWorkflow.post_message``, ``workflows/messages.py``) on the
time-skipping test server: steer is read before the next model call, queue when the agent
would otherwise finish (the run goes on), a stale ``expectedTurn`` is refused, a message
answers a waiting question, and pending messages survive continue-as-new."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from runyard.domain import RunStatus
from tests.workflows.conftest import record, running
from tests.workflows.fakes import Turn, World
from tests.workflows.test_run_workflow import until
from workflows.message_payloads import (
    DeliverInput,
    DeliverResult,
    PostMessageRequest,
    RecordMessageInput,
)
from workflows.payloads import CancelRequest, ExecRequest, TurnInput, TurnResult
from workflows.run import RunWorkflow

TOOL = Turn(["bash"])
SLOW_TOOL = Turn(["bash"], seconds=1.0)
DONE = Turn([])
ASK = Turn(["ask_user"])


@dataclass
class Mail:
    mode: str
    status: str = "pending"
    turn: int | None = None


@dataclass
class Inboxes:
    messages: dict[str, Mail] = field(default_factory=dict)
    # What each model turn found delivered when it started: turn → message ids.
    seen: dict[int, list[str]] = field(default_factory=dict)
    started: list[int] = field(default_factory=list)


class MailWorld(World):
    """The fake world, with the store side of messages."""

    def __init__(self) -> None:
        super().__init__()
        self.mail = Inboxes()

    @activity.defn(name="record_message")
    async def record_message(self, inp: RecordMessageInput) -> None:
        mail = Mail(inp.mode)
        if inp.delivered_turn is not None:
            mail.status, mail.turn = "delivered", inp.delivered_turn
        self.mail.messages.setdefault(inp.message_id, mail)

    @activity.defn(name="deliver_messages")
    async def deliver_messages(self, inp: DeliverInput) -> DeliverResult:
        done = []
        for mid in inp.message_ids:
            m = self.mail.messages[mid]
            if m.status == "pending":
                m.status, m.turn = "delivered", inp.turn
                done.append(mid)
        return DeliverResult(delivered=done)

    @activity.defn(name="run_agent_turn")
    async def run_agent_turn(self, inp: TurnInput) -> TurnResult:
        self.mail.seen[inp.turn] = [
            mid for mid, m in self.mail.messages.items() if m.status == "delivered"
        ]
        self.mail.started.append(inp.turn)
        result: TurnResult = await World.run_agent_turn(self, inp)
        return result

    def activities(self) -> list[Any]:
        mine = [self.record_message, self.deliver_messages, self.run_agent_turn]
        names = {"record_message", "deliver_messages", "run_agent_turn"}
        return [a for a in super().activities() if a.__name__ not in names] + mine


def msg(mid: str, mode: str, expected_turn: int | None = None) -> PostMessageRequest:
    return PostMessageRequest(
        message_id=mid, content=f"{mode} {mid}", mode=mode, expected_turn=expected_turn
    )


async def test_steer_is_read_next_turn_and_queue_when_the_agent_would_finish(
    env: WorkflowEnvironment,
) -> None:
    world = MailWorld()
    async with running(env, world) as start:
        handle = await start([SLOW_TOOL, DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: 1 in world.mail.started)  # turn 1's model call is under way
        steer = await handle.execute_update(
            RunWorkflow.post_message, msg("msg_s", "steer", expected_turn=1)
        )
        queued = await handle.execute_update(RunWorkflow.post_message, msg("msg_q", "queue"))
        assert (steer.status, steer.turn, queued.status) == ("pending", 1, "pending")
        result = await handle.result()
        await record(handle, "messages-steer-queue")
    run = world.runs[handle.id]
    assert result.status == RunStatus.COMPLETED == run.status
    # steer: before the model call after the one in flight; queue: the agent answered
    # without tools at turn 2, so instead of completing it got a turn 3.
    assert world.mail.messages["msg_s"] == Mail("steer", "delivered", 2)
    assert world.mail.messages["msg_q"] == Mail("queue", "delivered", 3)
    assert world.mail.seen[2] == ["msg_s"]
    assert world.mail.seen[3] == ["msg_s", "msg_q"]
    assert run.turns == 3


async def test_a_queued_message_waits_while_the_agent_works(env: WorkflowEnvironment) -> None:
    world = MailWorld()
    async with running(env, world) as start:
        handle = await start([SLOW_TOOL, TOOL, TOOL, DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: 1 in world.mail.started)
        await handle.execute_update(RunWorkflow.post_message, msg("msg_q", "queue"))
        await handle.result()
    # Turns 2-4 used tools or finished; it is read at turn 5, when turn 4 would end the run.
    assert world.mail.messages["msg_q"].turn == 5
    assert world.mail.seen[4] == []


async def test_a_stale_expected_turn_is_refused(env: WorkflowEnvironment) -> None:
    world = MailWorld()
    async with running(env, world) as start:
        handle = await start([SLOW_TOOL, DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: 1 in world.mail.started)
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(
                RunWorkflow.post_message, msg("msg_x", "steer", expected_turn=0)
            )
        assert isinstance(err.value.cause, ApplicationError)
        assert err.value.cause.type == "RUN_TURN_MISMATCH"
        await handle.result()
    assert "msg_x" not in world.mail.messages  # refused by the validator: nothing stored


async def test_a_message_answers_the_question_the_run_waits_on(env: WorkflowEnvironment) -> None:
    world = MailWorld()
    async with running(env, world) as start:
        handle = await start([ASK, DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: world.runs[handle.id].status == RunStatus.WAITING_FOR_INPUT)
        answered = await handle.execute_update(RunWorkflow.post_message, msg("msg_a", "queue"))
        assert answered.status == "delivered"
        await handle.result()
    assert world.runs[handle.id].answers == ["queue msg_a"]
    assert world.mail.messages["msg_a"] == Mail("queue", "delivered", 1)
    assert world.mail.started == [1, 2]  # answered: not delivered again as a note


async def test_a_message_left_pending_when_the_run_is_cancelled_is_not_delivered(
    env: WorkflowEnvironment,
) -> None:
    world = MailWorld()
    async with running(env, world) as start:
        handle = await start([SLOW_TOOL, DONE])
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: 1 in world.mail.started)
        await handle.execute_update(RunWorkflow.post_message, msg("msg_q", "queue"))
        await handle.execute_update(RunWorkflow.cancel, CancelRequest())
    assert world.mail.messages["msg_q"].status == "pending"  # finish_run drops it (store)
    assert world.mail.started == [1]


async def test_pending_messages_survive_continue_as_new(env: WorkflowEnvironment) -> None:
    world = MailWorld()
    async with running(env, world) as start:
        handle = await start([SLOW_TOOL, TOOL, TOOL, DONE], continue_as_new_events=10)
        await handle.execute_update(RunWorkflow.exec, ExecRequest())
        await until(lambda: 1 in world.mail.started)
        await handle.execute_update(RunWorkflow.post_message, msg("msg_q", "queue"))
        result = await handle.result()
    assert result.status == RunStatus.COMPLETED
    assert world.mail.messages["msg_q"].status == "delivered"
    assert world.mail.messages["msg_q"].turn == 5
