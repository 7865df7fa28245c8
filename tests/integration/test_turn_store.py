"""The per-cycle store paths without the ORM (issue 28), on SQLite and on Postgres: the
run's head, fresh appends, one-statement charges, and the reads of a turn and a call."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from activities.lifecycle import LifecycleActivities
from runyard.db.engine import Database
from runyard.db.tables import CreditEntry, Organization, Run
from runyard.errors import RunNotFound
from runyard.store.credits import charge_turn
from runyard.store.events import NewEvent, append_events, list_events, locked_head, set_columns
from runyard.store.transcript import add_message, assistant_key, result_key
from runyard.store.turns import call_state, turn_state
from tests.integration.test_store import append, new_run
from workflows.payloads import RunRef


async def test_a_head_append_sets_its_columns_with_last_seq(db: Database) -> None:
    run = await new_run(db)
    await append(db, run.id, NewEvent("a", "x"))

    def write(s: Session) -> tuple[list[int], int]:
        head = locked_head(s, run.id)
        seqs = append_events(
            s, head, [NewEvent("b", "x"), NewEvent("c", "x")], columns={"usage": {"turns": 1}}
        )
        return seqs, head.last_seq

    assert await db.transact(write) == ([2, 3], 3)
    async with db.session() as s:
        stored = await s.get(Run, run.id)
    assert stored is not None and stored.last_seq == 3 and stored.usage == {"turns": 1}
    with pytest.raises(RunNotFound):
        await db.transact(lambda s: locked_head(s, "run_missing"))
    # By attribute name, whatever the column is called (metadata_ is "metadata").
    await db.transact(lambda s: set_columns(s, locked_head(s, run.id), {"metadata_": {"k": 1}}))
    async with db.session() as s:
        again = await s.get(Run, run.id)
    assert again is not None and again.metadata_ == {"k": 1}
    with pytest.raises(KeyError):
        await db.transact(lambda s: set_columns(s, locked_head(s, run.id), {"nope": 1}))


async def test_a_fresh_append_of_a_stored_key_fails_and_leaves_nothing(db: Database) -> None:
    run = await new_run(db)
    await append(db, run.id, NewEvent("k", "x"))

    def duplicate(s: Session) -> None:
        add_message(s, run.id, "turn1.assistant", "assistant", [{"type": "text", "text": "t"}])
        append_events(s, locked_head(s, run.id), [NewEvent("k", "x")], fresh=True)

    with pytest.raises(IntegrityError):
        await db.transact(duplicate)
    async with db.session() as s:
        events = await list_events(s, run.id)
        stored = await s.get(Run, run.id)
    assert [e.key for e in events] == ["k"]
    assert stored is not None and stored.last_seq == 1
    state = await db.read_core(lambda c: turn_state(c, run.id, 1))
    assert state.done is None  # the message rolled back with the events


async def test_a_turn_is_charged_once_and_only_with_credits_on(db: Database) -> None:
    run = await new_run(db)
    assert await db.transact(lambda s: charge_turn(s, run.org_id, run.id, 1, 7)) is None
    set_balance = update(Organization).where(col(Organization.id) == run.org_id)
    await db.transact(lambda s: s.execute(set_balance.values(credits_balance=100)))
    assert await db.transact(lambda s: charge_turn(s, run.org_id, run.id, 1, 7)) == 93
    assert await db.transact(lambda s: charge_turn(s, run.org_id, run.id, 1, 7)) is None
    assert await db.transact(lambda s: charge_turn(s, run.org_id, run.id, 2, 3)) == 90
    entries = await db.read(
        lambda s: list(
            s.execute(
                select(col(CreditEntry.key), col(CreditEntry.amount)).where(
                    col(CreditEntry.run_id) == run.id
                )
            )
        )
    )
    assert sorted(tuple(e) for e in entries) == [
        (f"charge.{run.id}.turn1", -7),
        (f"charge.{run.id}.turn2", -3),
    ]


async def test_a_turn_and_a_call_read_what_they_need_in_one_statement(db: Database) -> None:
    run = await new_run(db)
    state = await db.read_core(lambda c: turn_state(c, run.id, 1))
    assert state.run is not None and state.run.prompt == "p" and state.run.usage == {}
    assert state.done is None and state.credits is None
    call = {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {"command": "ls"}}

    def answer(s: Session) -> None:
        add_message(s, run.id, assistant_key(1), "assistant", [call])

    await db.transact(answer)
    state = await db.read_core(lambda c: turn_state(c, run.id, 1))
    assert state.done == [call]
    got = await db.read_core(lambda c: call_state(c, run.id, 1, "toolu_1"))
    assert (got.run_found, got.status, got.approvals, got.result_stored) == (
        True,
        "running",
        False,
        False,
    )
    assert got.call == call
    block = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "", "is_error": False}
    await db.transact(
        lambda s: add_message(s, run.id, result_key(1, "toolu_1"), "tool_result", [block])
    )
    got = await db.read_core(lambda c: call_state(c, run.id, 1, "toolu_1"))
    assert got.result_stored
    assert (await db.read_core(lambda c: call_state(c, run.id, 1, "other"))).call is None
    policy = update(Run).where(col(Run.id) == run.id).values(approvals={"policies": [{}]})
    await db.transact(lambda s: s.execute(policy))
    assert (await db.read_core(lambda c: call_state(c, run.id, 1, "toolu_1"))).approvals
    missing = await db.read_core(lambda c: call_state(c, "run_missing", 1, "toolu_1"))
    assert not missing.run_found and missing.call is None
    assert (await db.read_core(lambda c: turn_state(c, "run_missing", 1))).run is None


async def test_a_stop_request_is_read_with_the_call(db: Database) -> None:
    """``request_stop`` (a close or an interrupt while a turn's calls run beside it) is what
    ``call_state`` reads before each of those calls; asked twice, it keeps the first time."""
    run = await new_run(db)
    assert not (await db.read_core(lambda c: call_state(c, run.id, 1, "toolu_1"))).stopping
    lifecycle = LifecycleActivities(db)
    await lifecycle.request_stop(RunRef(run_id=run.id))
    assert (await db.read_core(lambda c: call_state(c, run.id, 1, "toolu_1"))).stopping
    async with db.session() as s:
        first = (await s.get(Run, run.id)).stop_requested_at  # type: ignore[union-attr]
    await lifecycle.request_stop(RunRef(run_id=run.id))
    async with db.session() as s:
        again = await s.get(Run, run.id)
    assert first is not None and again is not None and again.stop_requested_at == first
