"""The run's conversation, kept in the store (workflow history only carries ids)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, insert, or_, select
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.db.tables import Run, RunMessage
from runyard.db.types import utcnow
from runyard.domain import RunStatus
from runyard.events import keys
from runyard.events.keys import SEED_PREFIX
from runyard.runs.thread_order import inherited_runs


def assistant_key(turn: int) -> str:
    return f"turn{turn}.assistant"


def result_key(turn: int, call_id: str) -> str:
    return keys.tool_result(turn, call_id)  # the message and its event share the key


def get_message(session: Session, run_id: str, key: str) -> RunMessage | None:
    return (
        session.execute(
            select(RunMessage).where(col(RunMessage.run_id) == run_id, col(RunMessage.key) == key)
        )
        .scalars()
        .first()
    )


class ConversationRun(Protocol):
    """What the conversation needs of its run: a ``Run``, or a Core row of these."""

    @property
    def id(self) -> str: ...
    @property
    def prompt(self) -> str: ...
    @property
    def thread_id(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...


class MessageRow(Protocol):
    """A stored message as the conversation reads it: a ``RunMessage`` or a Core row."""

    @property
    def key(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def content(self) -> list[dict[str, Any]]: ...


_INSERT_MESSAGE = insert(RunMessage)
# A run's whole transcript, read at every turn: Core rows of three columns, and the
# statement built once (``runyard/store/events.py`` says why).
_RUN_MESSAGES = (
    select(col(RunMessage.key), col(RunMessage.role), col(RunMessage.content))
    .where(col(RunMessage.run_id) == bindparam("b_run_id"))
    .order_by(col(RunMessage.id))
)


def add_message(
    session: Session, run_id: str, key: str, role: str, content: list[dict[str, Any]]
) -> None:
    """Store one message of the run (a plain ``INSERT``: the turn's and the tool call's
    hot writes need no ORM object of it)."""
    row = {"run_id": run_id, "key": key, "role": role, "content": content}
    session.connection().execute(_INSERT_MESSAGE, {**row, "created_at": utcnow()})


NOTE_PREFIX = "Message from the user: "


def note_block(content: str) -> dict[str, Any]:
    """A message the user sent while the agent worked, read at its next turn."""
    return {"type": "text", "text": NOTE_PREFIX + content}


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Add blocks, merging into the previous message of the same side.

    A user message keeps its tool results first, as the Messages API requires.
    """
    if messages and messages[-1]["role"] == role:
        last = messages[-1]
        if isinstance(last["content"], str):
            last["content"] = [{"type": "text", "text": last["content"]}]
        last["content"].extend(blocks)
        if role == "user":
            last["content"].sort(key=lambda b: b.get("type") != "tool_result")
        return
    messages.append({"role": role, "content": list(blocks)})


_TURN_KEY = re.compile(r"^turn(\d+)\.")


def _until(rows: list[MessageRow], turn: int) -> list[MessageRow]:
    """The rows up to the end of ``turn`` (a fork's cut): those before the first row of a
    later turn."""
    kept: list[MessageRow] = []
    for row in rows:
        later = _TURN_KEY.match(row.key)
        if later is not None and int(later[1]) > turn:
            break
        kept.append(row)
    return kept


def _run_messages(
    session: Session,
    run: ConversationRun,
    into: list[dict[str, Any]],
    until_turn: int | None = None,
) -> None:
    rows: list[MessageRow] = list(session.connection().execute(_RUN_MESSAGES, {"b_run_id": run.id}))
    if until_turn is not None:
        rows = _until(rows, until_turn)
    if not (rows and rows[0].key.startswith(SEED_PREFIX)):
        _append(into, "user", [{"type": "text", "text": run.prompt}])
    for row in rows:
        _append(into, "assistant" if row.role == "assistant" else "user", list(row.content))


def conversation(
    session: Session, run: ConversationRun, until_turn: int | None = None
) -> list[dict[str, Any]]:
    """The Anthropic ``messages`` for the run's next turn.

    For a run in a thread, the completed runs before it come first (their prompts and
    transcripts), so the model continues the conversation. Runs that did not complete
    are left out: their transcripts may end half way through a tool call.
    ``until_turn``: the conversation as it stood at the end of that turn (a fork's cut).
    """
    messages: list[dict[str, Any]] = []
    if run.thread_id:
        # And the runs an ``interrupt`` superseded: their conversation goes on here.
        inherited = inherited_runs(session, run.thread_id)
        earlier = session.execute(
            select(Run)
            .where(
                col(Run.thread_id) == run.thread_id,
                or_(col(Run.status) == RunStatus.COMPLETED, col(Run.id).in_(inherited)),
                col(Run.created_at) < run.created_at,
                col(Run.id) != run.id,
            )
            .order_by(col(Run.created_at))
        ).scalars()
        for previous in earlier:
            _run_messages(session, previous, messages)
    _run_messages(session, run, messages, until_turn)
    if len(messages) == 1 and messages[0]["content"] == [{"type": "text", "text": run.prompt}]:
        messages[0]["content"] = run.prompt  # the plain form for a first turn
    return messages


def final_text(session: Session, run_id: str) -> str:
    row = (
        session.execute(
            select(RunMessage)
            .where(col(RunMessage.run_id) == run_id, col(RunMessage.role) == "assistant")
            .order_by(col(RunMessage.id).desc())
            .limit(1)
        )
        .scalars()
        .first()
    )
    if row is None:
        return ""
    return "".join(b.get("text", "") for b in row.content if b.get("type") == "text")
