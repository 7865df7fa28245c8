"""A run with ``RUNYARD_PAYLOAD_KEYS`` set: its history holds only ciphertext where its
values were (an answer here), it replays with the keys, and not without them. Recorded as
``histories/encrypted.0.json`` (``RUNYARD_RECORD_HISTORIES=1``) for the replay test."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from runyard.domain import RunStatus
from runyard.encryption import ENCODING, PayloadKeys, data_converter_for
from tests.workflows.conftest import RECORDING_KEYS, record, running, start_env
from tests.workflows.fakes import Turn, World
from workflows.payloads import AnswerRequest, ExecRequest
from workflows.run import RunWorkflow

SECRET = "deploy with token sk-live-0123456789abcdef"


async def until(predicate: Any, timeout: float = 10) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "never happened"
        await asyncio.sleep(0.02)


async def test_an_encrypted_run_keeps_its_values_sealed_and_replays() -> None:
    keys = PayloadKeys.parse(RECORDING_KEYS)
    converter = data_converter_for(keys)
    env = await start_env(converter)
    try:
        world = World()
        async with running(env, world) as start:
            handle = await start([Turn(["ask_user"]), Turn([])])
            await handle.execute_update(RunWorkflow.exec, ExecRequest())
            # A refusal's message is an encoded failure attribute, read back in the clear.
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(RunWorkflow.exec, ExecRequest())
            cause = refused.value.cause
            assert isinstance(cause, ApplicationError) and cause.type == "RUN_ALREADY_STARTED"
            assert cause.message.startswith("run is "), cause.message
            await until(lambda: world.runs[handle.id].status == RunStatus.WAITING_FOR_INPUT)
            await handle.execute_update(RunWorkflow.answer, AnswerRequest(content=SECRET))
            assert (await handle.result()).status == RunStatus.COMPLETED
            await record(handle, "encrypted")
            history = await handle.fetch_history()
    finally:
        await env.shutdown()
    assert world.runs[handle.id].answers == [SECRET]  # the activity got it in the clear
    raw = b"".join(event.SerializeToString() for event in history.events)
    assert b"sk-live" not in raw
    started = history.events[0].workflow_execution_started_event_attributes
    [inp] = started.input.payloads
    assert inp.metadata["encoding"] == ENCODING and b"org_t" not in inp.SerializeToString()
    # Search attributes are no payloads of the codec: the UI still lists and filters runs.
    upserted = [
        e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
        for e in history.events
        if e.HasField("upsert_workflow_search_attributes_event_attributes")
    ]
    assert upserted[-1]["RunyardStatus"].data == b'"completed"'

    await Replayer(workflows=[RunWorkflow], data_converter=converter).replay_workflow(history)
    plain = Replayer(workflows=[RunWorkflow], data_converter=pydantic_data_converter)
    with pytest.raises(Exception, match=r"binary/encrypted|[Ee]ncoding|decode"):
        await plain.replay_workflow(history, raise_on_replay_failure=True)
