"""Typed events (runyard/events): the keys are the stored strings, the models write the
JSON the writers wrote before them, and every event type has its model."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, get_args

import pytest

from runyard.client.models import Event as ClientEvent
from runyard.domain import EventType
from runyard.events import DATA_MODELS, EVENTS, AnyEvent, keys
from runyard.events import data as ev
from runyard.llm.pricing import empty_usage
from runyard.store.events import TERMINAL_EVENT_KEY
from runyard.store.transcript import result_key


def test_keys_are_the_stored_strings() -> None:
    # Stored with every event: a change would write an event twice for a run in flight.
    assert [keys.CREATED, keys.STARTED, keys.SANDBOX_READY, keys.GUARDRAIL, keys.TERMINAL] == [
        "created",
        "started",
        "sandbox.ready",
        "guardrail",
        "terminal",
    ]
    assert TERMINAL_EVENT_KEY == keys.TERMINAL
    assert (keys.sandbox_lost(2), keys.sandbox_rebuilt(2)) == ("sandbox.lost.2", "sandbox.ready.2")
    assert (keys.setup_done(0), keys.setup_done(3)) == (
        "sandbox.setup.done",
        "sandbox.setup.3.done",
    )
    assert (keys.setup_batch(0, 2, 5), keys.setup_batch(1, 2, 5)) == (
        "sandbox.setup.2.5",
        "sandbox.setup.g1.2.5",
    )
    assert keys.delta(3, 2, 7) == "turn3.a2.d7"
    assert keys.turn_retried(3, 2) == "turn3.retried.2"
    assert keys.message_completed(3) == "turn3.completed"
    assert keys.tool_call(3, "tu_1") == "turn3.call.tu_1"
    assert keys.tool_result(3, "tu_1") == "turn3.result.tu_1" == result_key(3, "tu_1")
    assert keys.usage(3) == "turn3.usage"
    assert keys.asked(3, "tu_1") == "turn3.ask.tu_1"
    assert keys.note("k") == "note.k"
    assert keys.final_output(1) == "output.1"
    assert keys.tool_output("turn3.result.tu_1", 0) == "turn3.result.tu_1.output.0"


def test_every_event_type_has_one_model() -> None:
    assert set(DATA_MODELS) == set(EventType)
    (union, *_) = get_args(AnyEvent)
    tags = [m.model_fields["type"].annotation for m in get_args(union)]
    assert sorted(get_args(t)[0] for t in tags) == sorted(EventType)


def _json(data: ev.EventData) -> str:
    return json.dumps(data.event("k").data)


@pytest.mark.parametrize(
    ("model", "before"),
    [
        (ev.RunStarted(), {}),
        (ev.RunCreated(status="queued"), {"status": "queued"}),
        (
            ev.ToolResult(tool_call_id="tu_1", output="x", is_error=False),
            {"toolCallId": "tu_1", "output": "x", "isError": False},
        ),
        (
            ev.MessageCompleted(message_id="m", text="t", stop_reason=None),
            {"messageId": "m", "text": "t", "stopReason": None},
        ),
        (
            ev.RunFailed(fail_reason="error", error=None),
            {"failReason": "error", "error": None},
        ),
        (ev.RunCancelled(status="cancelled"), {"status": "cancelled"}),
        (
            ev.RunInputReceived(tool_call_id="tu_1", content="yes"),
            {"toolCallId": "tu_1", "content": "yes"},
        ),
        (ev.RunInputReceived(content="note", queued=True), {"content": "note", "queued": True}),
        (ev.UsageUpdated.model_validate(empty_usage()), empty_usage()),
        (
            ev.GuardrailTriggered.model_validate({"guardrail": "maxTurns", "limit": 3, "value": 3}),
            {"guardrail": "maxTurns", "limit": 3, "value": 3},
        ),
        (
            ev.SandboxSetup.model_validate(
                {
                    "stream": "stdout",
                    "output": "",
                    "exitCode": 1,
                    "timedOut": False,
                    "clipped": True,
                }
            ),
            {"stream": "stdout", "output": "", "exitCode": 1, "timedOut": False, "clipped": True},
        ),
        (
            ev.OutputDetected.model_validate({"type": "branch", "name": "b", "sha": "1"}),
            {"type": "branch", "name": "b", "sha": "1"},
        ),
    ],
)
def test_the_models_write_the_json_written_before(model: ev.EventData, before: Any) -> None:
    # Same keys, same order, same values (0 stays 0, never 0.0; no null added).
    assert _json(model) == json.dumps(before)


def test_a_stored_event_reads_as_its_model() -> None:
    stored = {
        "seq": 4,
        "type": "tool.call",
        "data": {"toolCallId": "tu_1", "name": "bash", "input": {"command": "ls"}},
        "createdAt": "2026-01-01T00:00:00.000000Z",
    }
    event = EVENTS.validate_python(stored)
    assert isinstance(event.data, ev.ToolCall) and event.data.tool_call_id == "tu_1"
    assert event.model_dump(by_alias=True, exclude_unset=True) == stored
    typed = ClientEvent.model_validate(stored).typed
    assert typed is not None and isinstance(typed.data, ev.ToolCall)
    # A type this client does not know (a newer server's) is no error.
    assert ClientEvent.model_validate({**stored, "type": "run.forked"}).typed is None


def test_the_client_reads_events_without_the_store() -> None:
    code = (
        "import sys, runyard.client\n"
        "loaded = [m for m in ('sqlalchemy', 'sqlmodel', 'temporalio') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
