"""Forks and best-of-N without HTTP, on SQLite and on Postgres (issue 26): a group is made
all or none, a fork's turn is a boundary the source passed, an expired checkpoint is
gone (410), and a fork's seeded conversation is the source's as it stood at that turn."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from runyard.checkpoints.store import sources_branches
from runyard.checkpoints.tables import RunCheckpoint
from runyard.db.engine import Database
from runyard.db.tables import Run, RunMessage
from runyard.db.types import utcnow
from runyard.errors import CheckpointExpired, ConcurrentRunLimitExceeded, InvalidInput
from runyard.ids import new_id
from runyard.runs import RunService
from runyard.runs.attempts import create_group
from runyard.runs.fork import ForkOptions, plan_fork
from runyard.sandbox.base import SIZES
from runyard.settings import Settings
from runyard.store.transcript import conversation
from tests.integration.test_run_service import Engine, Request, _org


def _service(db: Database, tmp_path: Path, engine: Engine, **settings: Any) -> RunService:
    return RunService(db, Settings(data_dir=tmp_path, anthropic_api_key=None, **settings), engine)


async def _count(db: Database, org_id: str) -> int:
    async with db.session() as s:
        got = await s.scalar(select(func.count()).where(col(Run.org_id) == org_id))
    return int(got or 0)


async def test_a_group_is_made_all_or_none(db: Database, tmp_path: Path) -> None:
    # The third start is refused (a concurrent create took the room): none is left.
    class Third(Engine):
        async def start(self, run: Run, *, execute: bool) -> None:
            self.started.append((run.id, execute))
            if len(self.started) == 3:
                raise ConcurrentRunLimitExceeded("the organization is at its cap")

    engine = Third()
    runs = _service(db, tmp_path, engine)
    org = await _org(db)
    spec = await runs.resolve(Request(), org)
    with pytest.raises(ConcurrentRunLimitExceeded):
        await create_group(runs, spec, attempts=3, seed=None, start=True)
    assert await _count(db, org) == 0
    assert sorted(engine.discarded) == sorted(r for r, _ in engine.started)

    # Three that do not fit under the cap are refused before any is made.
    idle = Engine()
    capped = _service(db, tmp_path, idle, max_active_runs=2)
    with pytest.raises(ConcurrentRunLimitExceeded, match="3 attempts do not fit"):
        await create_group(capped, spec, attempts=3, seed=None, start=True)
    assert idle.started == [] and await _count(db, org) == 0

    # A group with an idempotency key: a retry gets the same runs.
    keyed = await runs.resolve(Request(), org, idempotency_key="grp-key")
    made, replayed = await create_group(capped, keyed, attempts=3, seed=None, start=False)
    again, replayed_again = await create_group(capped, keyed, attempts=3, seed=None, start=False)
    assert not replayed and replayed_again
    assert [r.id for r in again] == [r.id for r in made]
    assert {r.group_id for r in made} == {made[0].group_id} and made[0].group_id
    assert [r.idempotency_key for r in made] == ["grp-key", "grp-key#1", "grp-key#2"]


ASK_RM = {"rules": [{"tool": "bash", "match": {"command": "rm"}, "action": "ask"}]}


async def _source(db: Database, org_id: str, turns: int) -> Run:
    """A run whose transcript has ``turns`` tool turns and a boundary after each."""
    now = utcnow()
    run = Run(
        id=new_id("run"),
        org_id=org_id,
        status="completed",
        prompt="fix it",
        model="scripted",
        guardrails={"maxTurns": 10, "maxCostUsd": 1, "timeoutSeconds": 600},
        sandbox={"id": None, "provider": "local", "size": "s", "resources": SIZES["s"]},
        workflow_id="w",
        approvals={"policies": [ASK_RM], "grants": [{"tool": "bash", "input": {"command": "ls"}}]},
        created_at=now,
        updated_at=now,
    )
    async with db.write() as s:
        s.add(run)
        await s.flush()
        for t in range(1, turns + 1):
            use = {"type": "tool_use", "id": f"c{t}", "name": "bash", "input": {"command": "ls"}}
            s.add(
                RunMessage(run_id=run.id, key=f"turn{t}.assistant", role="assistant", content=[use])
            )
            result = {"type": "tool_result", "tool_use_id": f"c{t}", "content": f"out {t}"}
            s.add(
                RunMessage(
                    run_id=run.id, key=f"turn{t}.result.c{t}", role="tool_result", content=[result]
                )
            )
            s.add(
                RunCheckpoint(
                    id=new_id("ckp"),
                    run_id=run.id,
                    turn=t,
                    changed=t == 1,
                    seq=1 if t == 1 else None,
                    base_sha="b" * 40,
                    tree_sha="e" * 40,
                    bundle_path="x/ckpt.bundle" if t == 1 else None,
                    created_at=now - timedelta(days=40 if t == 1 else 0),
                )
            )
    return run


async def test_a_fork_is_cut_at_a_boundary_the_source_passed(db: Database, tmp_path: Path) -> None:
    runs = _service(db, tmp_path, Engine())
    org = await _org(db)
    source = await _source(db, org, turns=3)
    with pytest.raises(InvalidInput, match="forkable turns: 1 to 3") as err:
        await plan_fork(db, runs.settings, source, ForkOptions(turn=4))
    assert err.value.field_errors[0]["field"] == "turn"
    # Turn 2's code is turn 1's checkpoint, 40 days old: past the 30 days of retention.
    with pytest.raises(CheckpointExpired):
        await plan_fork(db, runs.settings, source, ForkOptions(turn=2))
    # The conversation alone needs no checkpoint.
    opts = ForkOptions(turn=2, restore="conversation", prompt="now add tests")
    spec, seed = await plan_fork(db, runs.settings, source, opts)
    assert spec.forked_from == {"runId": source.id, "turn": 2, "restore": "conversation"}
    fork = (await runs.create(spec, seed=seed)).run
    # Its source's approval policies go with it, not the source's run-scoped grants.
    assert fork.approvals == {"policies": [ASK_RM], "grants": []}

    def talks(s: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return conversation(s, s.get(Run, source.id), until_turn=2), conversation(
            s, s.get(Run, fork.id)
        )

    at_two, forked = await db.read(talks)
    assert [m["role"] for m in at_two] == ["user", "assistant", "user", "assistant", "user"]
    assert forked[:-1] == at_two[:-1] and forked[-1]["content"][:1] == at_two[-1]["content"]
    assert forked[-1]["content"][-1] == {"type": "text", "text": "now add tests"}

    # The fork pushes to branches of its own: its source's are taken.
    async with db.write() as s:
        row = await s.get(Run, source.id)
        assert row is not None
        row.outputs = [{"type": "branch", "name": "agent/x", "sha": "c" * 40, "url": "u"}]
        s.add(row)
    taken = await db.read(lambda s: sources_branches(s, fork))
    assert taken == frozenset({"agent/x"})
