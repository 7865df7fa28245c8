"""Approvals in the store: opened when a turn's calls are gated, decided by a person,
expired, or cancelled with the run. Every function runs inside one transaction of its
caller (``Database.transact``) on the locked run row, so a batch of decisions applies
all or nothing, and each write is idempotent for a retried activity.

A call that will not run (denied by a rule or a person, expired, cancelled) gets its one
``tool_result`` here, ``is_error`` with the reason, so the model knows it did not happen;
its ``run_tool`` activity then finds the result stored and runs nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.approvals.policy import decide, grant_for, policies_of
from runyard.db.tables import Approval, Run, RunMessage
from runyard.domain import RunStatus
from runyard.errors import ApprovalAlreadyDecided, ApprovalNotFound, ApprovalNotPending
from runyard.events import data as ev
from runyard.events import keys
from runyard.events.data import NewEvent
from runyard.ids import new_id
from runyard.store.events import append_events
from runyard.store.runs import set_status
from runyard.store.transcript import assistant_key, get_message

PENDING = "pending"
# Oldest first, and a turn's approvals in the order the model made the calls.
ORDER = (col(Approval.turn), col(Approval.position), col(Approval.id))
DECIDED = {"approve": "approved", "edit": "edited", "deny": "denied"}
DONE = frozenset({"expired", "cancelled"})


def iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def approval_object(a: Approval) -> dict[str, Any]:
    """The ``apr_…`` object of the HTTP contract."""
    return {
        "id": a.id,
        "object": "approval",
        "runId": a.run_id,
        "turn": a.turn,
        "toolCallId": a.tool_call_id,
        "tool": a.tool,
        "input": a.edited_input if a.edited_input is not None else a.input,
        **({"originalInput": a.input} if a.edited_input is not None else {}),
        "rule": a.rule,
        "status": a.status,
        "decision": a.decision,
        "message": a.message,
        "scope": a.scope,
        "decidedBy": a.decided_by,
        "createdAt": iso(a.created_at),
        "expiresAt": iso(a.expires_at),
        "decidedAt": iso(a.decided_at),
    }


@dataclass(frozen=True)
class Gated:
    """What gating a turn's calls decided: the approvals to wait for, the calls refused."""

    pending: list[str]  # approval ids
    pending_calls: list[str]  # the tool call id of each
    refused: list[str]  # tool call ids that got an error result and must not run
    timeout_seconds: int
    on_timeout: str


def _result(
    s: Session, run: Run, turn: int, call_id: str, text: str, events: list[NewEvent]
) -> None:
    """The one error result of a call that did not run (once: a retry finds it)."""
    key = keys.tool_result(turn, call_id)
    if get_message(s, run.id, key) is not None:
        return
    block = {"type": "tool_result", "tool_use_id": call_id, "content": text, "is_error": True}
    s.add(RunMessage(run_id=run.id, key=key, role="tool_result", content=[block]))
    events.append(ev.ToolResult(tool_call_id=call_id, output=text, is_error=True).event(key))


def _pending_of(s: Session, run_id: str) -> list[Approval]:
    query = select(Approval).where(col(Approval.run_id) == run_id, col(Approval.status) == PENDING)
    return list(s.execute(query.order_by(*ORDER)).scalars())


def _sync_waiting(s: Session, run: Run, now: datetime) -> None:
    """The run object's ``pendingApprovals``; back to running once none waits."""
    pending = [approval_object(a) for a in _pending_of(s, run.id)]
    if pending:
        vals = {"waiting_for": "approval", "pending_approvals": pending}
        set_status(
            s,
            run,
            RunStatus.WAITING_FOR_INPUT,
            allowed_from={RunStatus.RUNNING, RunStatus.WAITING_FOR_INPUT},
            now=now,
            values=vals,
        )
    else:
        set_status(
            s,
            run,
            RunStatus.RUNNING,
            allowed_from={RunStatus.WAITING_FOR_INPUT},
            now=now,
            values={"waiting_for": None, "pending_approvals": None},
        )


def open_turn(s: Session, run: Run, turn: int, calls: list[str], now: datetime) -> Gated:
    """Decide each of a turn's calls by the run's policy: a denied call gets its error
    result, an asked one an approval (``approval.requested``); the run then waits."""
    policies, grants = policies_of(run.approvals)
    seconds, on_timeout = (86_400, "deny")
    if policies:
        seconds, on_timeout = min(p.timeout_seconds for p in policies), policies[-1].on_timeout
    message = get_message(s, run.id, assistant_key(turn))
    blocks = {str(b.get("id")): b for b in (message.content if message else [])}
    events: list[NewEvent] = []
    pending: list[str] = []
    calls_of: list[str] = []
    refused: list[str] = []
    order = {str(b.get("id")): n for n, b in enumerate(message.content if message else [])}
    for call_id in calls:
        block = blocks.get(call_id)
        if block is None or get_message(s, run.id, keys.tool_result(turn, call_id)) is not None:
            continue  # refused at the model turn already (its result is stored)
        existing = s.execute(
            select(Approval).where(
                col(Approval.run_id) == run.id, col(Approval.tool_call_id) == call_id
            )
        ).scalar_one_or_none()
        if existing is not None:  # a retry of this activity
            if existing.status == PENDING:
                pending.append(existing.id)
                calls_of.append(call_id)
            continue
        name, raw = str(block.get("name")), block.get("input")
        d = decide(policies, name, raw, grants)
        if d.action == "deny":
            text = (
                f"This call was denied by the run's approval policy ({d.reason}); it did not run."
            )
            _result(s, run, turn, call_id, text, events)
            refused.append(call_id)
        elif d.action == "ask":
            a = Approval(
                id=new_id("apr"),
                run_id=run.id,
                org_id=run.org_id,
                turn=turn,
                position=order[call_id],
                tool_call_id=call_id,
                tool=name,
                input=raw,
                rule=d.rule,
                created_at=now,
                expires_at=now + timedelta(seconds=seconds),
            )
            s.add(a)
            pending.append(a.id)
            calls_of.append(call_id)
            requested = ev.ApprovalRequested(
                approval_id=a.id,
                tool_call_id=call_id,
                name=name,
                input=raw,
                rule=d.rule,
                expires_at=iso(a.expires_at),
            )
            events.append(requested.event(keys.approval_requested(a.id)))
    s.flush()
    append_events(s, run, events, now=now)
    if pending:
        _sync_waiting(s, run, now)
    return Gated(pending, calls_of, refused, seconds, on_timeout)


@dataclass(frozen=True)
class Choice:
    """One decision of a request: ``approve``, ``edit`` (with ``input``) or ``deny``."""

    id: str
    decision: str
    input: Any = None
    message: str | None = None
    scope: str = "once"


def same_decision(a: Approval, c: Choice) -> bool:
    return (
        a.decision == c.decision
        and a.scope == (c.scope or "once")
        and (c.decision != "edit" or a.edited_input == c.input)
    )


def check(a: Approval | None, c: Choice, run_id: str, key: str | None) -> bool:
    """Whether ``c`` still has to be applied to ``a`` (False: it already was, the same
    decision again or the same Idempotency-Key); raises what a request must answer."""
    if a is None or a.run_id != run_id:
        raise ApprovalNotFound(f"run {run_id} has no approval {c.id}")
    if a.status == PENDING:
        return True
    if a.status in DONE:
        raise ApprovalNotPending(f"approval {a.id} is {a.status}")
    if (key is not None and a.decision_key == key) or same_decision(a, c):
        return False
    raise ApprovalAlreadyDecided(f"approval {a.id} was already decided: {a.decision}")


def record(
    s: Session,
    run: Run,
    choices: list[Choice],
    decided_by: str,
    key: str | None,
    now: datetime,
) -> list[str]:
    """Apply every decision, or none (a refused one raises before anything is written).
    Returns the ids of the approvals that were pending and now are decided."""
    rows = {c.id: s.get(Approval, c.id) for c in choices}
    todo = [c for c in choices if check(rows[c.id], c, run.id, key)]
    events: list[NewEvent] = []
    stored = dict(run.approvals or {})
    grants = list(stored.get("grants", []))
    for c in todo:
        a = rows[c.id]
        assert a is not None
        a.status, a.decision, a.message = DECIDED[c.decision], c.decision, c.message
        a.scope, a.decided_by, a.decision_key, a.decided_at = c.scope, decided_by, key, now
        if c.decision == "edit":
            a.edited_input = c.input
        s.add(a)
        if c.decision == "deny":
            said = f" Their message: {c.message}" if c.message else ""
            text = f"The user denied this call; it did not run.{said}"
            _result(s, run, a.turn, a.tool_call_id, text, events)
        elif c.scope == "run":
            grants.append(grant_for(a.tool, a.input, a.rule).model_dump(mode="json"))
        resolved = ev.ApprovalResolved(
            approval_id=a.id, decision=c.decision, decided_by=decided_by, scope=c.scope
        )
        events.append(resolved.event(keys.approval_resolved(a.id)))
    if grants != stored.get("grants", []):
        run.approvals = {**stored, "grants": grants}
        s.add(run)
    s.flush()
    append_events(s, run, events, now=now)
    _sync_waiting(s, run, now)
    return [c.id for c in todo]


def close(s: Session, run: Run, ids: list[str] | None, status: str, now: datetime) -> None:
    """Mark pending approvals ``expired`` or ``cancelled`` (``ids`` None: all of the run's),
    each with its call's error result and ``approval.resolved``."""
    events: list[NewEvent] = []
    for a in _pending_of(s, run.id):
        if ids is not None and a.id not in ids:
            continue
        a.status, a.decided_at = status, now
        s.add(a)
        if status == "expired":
            text = "No one approved this call in time; it did not run."
        else:
            text = "The run ended before this call was approved; it did not run."
        _result(s, run, a.turn, a.tool_call_id, text, events)
        events.append(
            ev.ApprovalResolved(approval_id=a.id, decision=status).event(
                keys.approval_resolved(a.id)
            )
        )
    s.flush()
    append_events(s, run, events, now=now)
    if status == "expired":
        _sync_waiting(s, run, now)
    elif run.waiting_for == "approval":  # the run ends: the caller writes its status
        run.waiting_for, run.pending_approvals = None, None
        s.add(run)


def edited_input(s: Session, run_id: str, call_id: str) -> Any:
    """The input a person edited a call's into, or None."""
    a = s.execute(
        select(Approval).where(
            col(Approval.run_id) == run_id, col(Approval.tool_call_id) == call_id
        )
    ).scalar_one_or_none()
    return None if a is None else a.edited_input


def edited_note(edited: Any) -> str:
    """What the result of an edited call starts with: the model did not choose this input."""
    return f"A person edited this call before it ran; it ran with the input {json.dumps(edited)}."


def list_approvals(s: Session, run_id: str, status: str | None) -> list[Approval]:
    query = select(Approval).where(col(Approval.run_id) == run_id)
    if status is not None:
        query = query.where(col(Approval.status) == status)
    return list(s.execute(query.order_by(*ORDER)).scalars())
