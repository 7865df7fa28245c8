"""The approval store on SQLite and on Postgres: a turn gated once however often the
activity is retried, a batch applied all or none, and a run's ending cancelling what
still waits — each call with exactly one result."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.approvals import store
from runyard.approvals.policy import ApprovalPolicy
from runyard.db.engine import Database
from runyard.db.tables import Approval, Run, RunEvent, RunMessage
from runyard.db.types import utcnow
from runyard.errors import ApprovalNotFound
from runyard.store.events import locked_run
from runyard.store.transcript import assistant_key
from tests.integration.test_store import new_run

CALLS: list[dict[str, Any]] = [
    {"type": "tool_use", "id": "tu_a", "name": "bash", "input": {"command": "git push"}},
    {"type": "tool_use", "id": "tu_b", "name": "bash", "input": {"command": "rm -rf x"}},
    {"type": "tool_use", "id": "tu_c", "name": "read_file", "input": {"path": "a"}},
    {"type": "tool_use", "id": "tu_d", "name": "write_file", "input": {"path": 3}},
]
POLICY = ApprovalPolicy.model_validate(
    {
        "rules": [
            {"tool": "bash", "match": {"command": "push"}, "action": "ask"},
            {"tool": "bash", "match": {"command": "rm "}, "action": "deny"},
        ]
    }
)


async def gated_run(db: Database) -> Run:
    run = await new_run(db)

    def prepare(s: Session) -> None:
        row = locked_run(s, run.id)
        row.approvals = {"policies": [POLICY.wire()], "grants": []}
        s.add(row)
        s.add(RunMessage(run_id=run.id, key=assistant_key(1), role="assistant", content=CALLS))

    await db.transact(prepare)
    return run


def _open(run_id: str) -> Any:
    def gate(s: Session) -> store.Gated:
        return store.open_turn(s, locked_run(s, run_id), 1, [c["id"] for c in CALLS], utcnow())

    return gate


async def test_a_turn_is_gated_once_and_decided_all_or_none(db: Database) -> None:
    run = await gated_run(db)
    gated = await db.transact(_open(run.id))
    again = await db.transact(_open(run.id))  # a retried activity
    assert gated.refused == ["tu_b"] and again.refused == []
    assert gated.pending == again.pending and gated.pending_calls == ["tu_a", "tu_d"]
    row = await db.read(lambda s: s.get(Run, run.id))
    assert row is not None and row.status == "waiting_for_input"
    assert row.waiting_for == "approval" and len(row.pending_approvals or []) == 2

    push, bad_input = gated.pending
    choices = [store.Choice(push, "approve", scope="run"), store.Choice("apr_x", "deny")]

    def decide(items: list[store.Choice]) -> Any:
        return lambda s: store.record(s, locked_run(s, run.id), items, "key_t", None, utcnow())

    with pytest.raises(ApprovalNotFound):
        await db.transact(decide(choices))
    assert (await db.read(lambda s: s.get(Approval, push))).status == "pending"  # type: ignore[union-attr]
    await db.transact(decide([store.Choice(push, "approve", scope="run")]))
    row = await db.read(lambda s: s.get(Run, run.id))
    assert row is not None and row.status == "waiting_for_input"
    assert row.approvals is not None and row.approvals["grants"][0]["tool"] == "bash"

    # The run ends with one approval waiting: it is cancelled, with its error result.
    await db.transact(lambda s: store.close(s, locked_run(s, run.id), None, "cancelled", utcnow()))
    rows = await db.read(lambda s: store.list_approvals(s, run.id, None))
    assert {a.id: a.status for a in rows} == {push: "approved", bad_input: "cancelled"}

    def results(s: Session) -> list[str]:
        query = select(RunEvent).where(
            col(RunEvent.run_id) == run.id, col(RunEvent.type) == "tool.result"
        )
        return [e.data["toolCallId"] for e in s.execute(query).scalars()]

    assert sorted(await db.read(results)) == ["tu_b", "tu_d"]  # tu_a runs later, tu_c is allowed


async def test_expired_calls_get_their_result_and_the_run_goes_on(db: Database) -> None:
    run = await gated_run(db)
    gated = await db.transact(_open(run.id))
    await db.transact(
        lambda s: store.close(s, locked_run(s, run.id), gated.pending, "expired", utcnow())
    )
    row = await db.read(lambda s: s.get(Run, run.id))
    assert row is not None and row.status == "running" and row.waiting_for is None

    def texts(s: Session) -> list[str]:
        query = select(RunMessage).where(
            col(RunMessage.run_id) == run.id, col(RunMessage.role) == "tool_result"
        )
        return [str(m.content[0]["content"]) for m in s.execute(query).scalars()]

    got = await db.read(texts)
    assert sum("No one approved this call in time" in t for t in got) == 2
