"""What a model turn and a tool call read before they run: one statement each, without
the ORM (they run at every cycle of every run; ``bench/cost.py`` measures them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, exists, select
from sqlmodel import col

from runyard.db.tables import Organization, Run, RunMessage
from runyard.store.transcript import assistant_key, result_key


@dataclass(frozen=True)
class TurnRun:
    """The run as a model turn reads it (a ``ConversationRun`` for its conversation)."""

    id: str
    org_id: str
    status: str
    model: str
    prompt: str
    instructions: str | None
    guidance: str | None
    usage: dict[str, Any]
    thread_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class TurnState:
    run: TurnRun | None  # None: the run is not stored
    done: list[dict[str, Any]] | None  # the turn's assistant message, if stored already
    credits: int | None  # the organization's balance; None: credits are off


def _message(key: str) -> Any:
    """The content of the run's message stored under the bound ``key``, as a column."""
    return (
        select(col(RunMessage.content))
        .where(col(RunMessage.run_id) == col(Run.id), col(RunMessage.key) == bindparam(key))
        .scalar_subquery()
    )


# Built once: building a statement and its cache key cost several times what running it
# on SQLite does (runyard/store/events.py).
_TURN_STATE = select(
    col(Run.id),
    col(Run.org_id),
    col(Run.status),
    col(Run.model),
    col(Run.prompt),
    col(Run.instructions),
    col(Run.guidance),
    col(Run.usage),
    col(Run.thread_id),
    col(Run.created_at),
    _message("b_answer").label("done"),
    select(col(Organization.credits_balance))
    .where(col(Organization.id) == col(Run.org_id))
    .scalar_subquery()
    .label("credits"),
).where(col(Run.id) == bindparam("b_run_id"))


def turn_state(conn: Connection, run_id: str, turn: int) -> TurnState:
    """The run, the turn's stored answer (a retry after the commit) and the credits left."""
    params = {"b_run_id": run_id, "b_answer": assistant_key(turn)}
    row = conn.execute(_TURN_STATE, params).first()
    if row is None:
        return TurnState(None, None, None)
    run = TurnRun(
        row.id,
        row.org_id,
        row.status,
        row.model,
        row.prompt,
        row.instructions,
        row.guidance,
        row.usage or {},
        row.thread_id,
        row.created_at,
    )
    return TurnState(run, row.done, None if row.credits is None else int(row.credits))


@dataclass(frozen=True)
class CallState:
    """What a tool call's activity reads before it runs the call (:func:`call_state`)."""

    run_found: bool
    status: str | None
    approvals: bool  # the run has an approval policy: the call may have been edited
    result_stored: bool
    call: dict[str, Any] | None  # the model's tool_use block of the call, if stored
    stopping: bool = False  # a close or an interrupt asked the run to stop (request_stop)


_CALL_STATE = select(
    col(Run.status),
    # The column itself: a run without a policy may hold JSON null, not SQL NULL.
    col(Run.approvals),
    exists()
    .where(col(RunMessage.run_id) == col(Run.id), col(RunMessage.key) == bindparam("b_result"))
    .label("stored"),
    _message("b_answer").label("content"),
    col(Run.stop_requested_at),
).where(col(Run.id) == bindparam("b_run_id"))


def call_state(conn: Connection, run_id: str, turn: int, call_id: str) -> CallState:
    """One statement: the run's status, whether the call's result is stored, and the call
    as the model made it."""
    params = {
        "b_run_id": run_id,
        "b_answer": assistant_key(turn),
        "b_result": result_key(turn, call_id),
    }
    row = conn.execute(_CALL_STATE, params).first()
    if row is None:
        return CallState(False, None, False, False, None)
    blocks: list[dict[str, Any]] = row.content or []
    call = next((b for b in blocks if b.get("id") == call_id), None)
    stopping = row.stop_requested_at is not None
    return CallState(True, row.status, bool(row.approvals), bool(row.stored), call, stopping)
