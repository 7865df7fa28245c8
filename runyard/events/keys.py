"""Every event's idempotency key, in one place.

A key is what makes an append idempotent (``runyard/store/events.py``): an activity that
is retried writes the same keys, and the store skips those it has. So a key must be the
same on every attempt that must not write twice, and differ where two events are wanted
(a delta of each model attempt, a setup batch of each activity attempt). These strings
are stored: changing one would write an event twice for a run in flight.

The result of a tool call shares its key with the transcript message that holds it
(``runyard/store/transcript.py`` uses :func:`tool_result`): one key, one result.
This module imports nothing: the client reads events too.
"""

from __future__ import annotations

CREATED = "created"
STARTED = "started"
SANDBOX_READY = "sandbox.ready"
GUARDRAIL = "guardrail"
TERMINAL = "terminal"  # the one terminal event: nothing is appended after it
SETUP_DONE = "sandbox.setup.done"


def sandbox_lost(generation: int) -> str:
    return f"sandbox.lost.{generation}"


def sandbox_rebuilt(generation: int) -> str:
    """The ``sandbox.ready`` of the sandbox rebuilt after generation ``generation``'s loss."""
    return f"sandbox.ready.{generation}"


def setup_done(generation: int) -> str:
    """The last ``sandbox.setup`` event of a setup that succeeded."""
    return f"sandbox.setup.{generation}.done" if generation else SETUP_DONE


def setup_batch(generation: int, attempt: int, index: int) -> str:
    """A batch of setup output: per activity attempt, as a retried setup runs again."""
    prefix = f"sandbox.setup.g{generation}" if generation else "sandbox.setup"
    return f"{prefix}.{attempt}.{index}"


def delta(turn: int, attempt: int, index: int) -> str:
    """A ``message.delta`` of one model attempt (a retried turn streams anew)."""
    return f"turn{turn}.a{attempt}.d{index}"


def turn_retried(turn: int, attempt: int) -> str:
    return f"turn{turn}.retried.{attempt}"


def message_completed(turn: int) -> str:
    return f"turn{turn}.completed"


def tool_call(turn: int, call_id: str) -> str:
    return f"turn{turn}.call.{call_id}"


def tool_result(turn: int, call_id: str) -> str:
    """A ``tool.result`` (or the answer that is an ``ask_user`` call's result), and the
    key of the transcript message that holds it."""
    return f"turn{turn}.result.{call_id}"


def usage(turn: int) -> str:
    return f"turn{turn}.usage"


def asked(turn: int, call_id: str) -> str:
    """``run.waiting_for_input`` for an ``ask_user`` call."""
    return f"turn{turn}.ask.{call_id}"


def note(key: str) -> str:
    """A queued user message (``run.input_received``); ``key`` is the client's."""
    return f"note.{key}"


def approval_requested(approval_id: str) -> str:
    return f"approval.{approval_id}.requested"


def approval_resolved(approval_id: str) -> str:
    return f"approval.{approval_id}.resolved"


def final_output(index: int) -> str:
    """An ``output.detected`` for an output collected when the run ends."""
    return f"output.{index}"


def tool_output(source_key: str, index: int) -> str:
    """An ``output.detected`` for an output a tool call (``source_key``) recorded."""
    return f"{source_key}.output.{index}"


def message_queued(message_id: str) -> str:
    """``message.queued`` of a message to a busy run (``msg_…``)."""
    return f"{message_id}.queued"


def message_delivered(message_id: str) -> str:
    return f"{message_id}.delivered"


def message_dropped(message_id: str) -> str:
    return f"{message_id}.dropped"


def message_note(message_id: str) -> str:
    """The transcript message that holds a delivered message."""
    return f"note.{message_id}"


# A fork's first transcript messages: the conversation it was cut from, its prompt included.
SEED_PREFIX = "seed."
