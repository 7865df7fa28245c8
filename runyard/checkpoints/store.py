"""Checkpoints in the store and their files in the ArtifactStore: recording a turn
boundary, the checkpoint object of the API, and where a fork's code comes from."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.artifacts.store import ArtifactStore
from runyard.checkpoints.git import Snapshot
from runyard.checkpoints.tables import RunCheckpoint
from runyard.db.engine import Database
from runyard.db.tables import Run
from runyard.db.types import utcnow
from runyard.errors import CheckpointExpired
from runyard.ids import new_id
from runyard.store.run_view import iso

DIFF_KINDS = ("previous", "base")
DIFF_TYPE = "text/x-diff"
# A fork of a fork of a … finds its code at most this many runs up.
MAX_LINEAGE = 32


def blob_path(org_id: str, run_id: str, turn: int, name: str) -> str:
    """Where a checkpoint's file is kept: ``ckpt.bundle``, ``previous.diff``, ``base.diff``."""
    return f"{org_id}/{run_id}/checkpoints/{turn}/{name}"


async def record_boundary(
    db: Database,
    store: ArtifactStore,
    run: Run,
    turn: int,
    base: str | None,
    snap: Snapshot | None,
) -> RunCheckpoint:
    """Record the boundary of ``turn`` once (a retry finds it recorded); with a changed
    snapshot, its files go to the ArtifactStore first, so a row always has its files."""
    bundle_path = None
    if snap is not None and snap.changed:
        puts = [
            store.put(blob_path(run.org_id, run.id, turn, f"{kind}.diff"), diff, DIFF_TYPE)
            for kind, diff in (("previous", snap.previous_diff), ("base", snap.base_diff))
        ]
        if snap.bundle is not None:
            bundle_path = blob_path(run.org_id, run.id, turn, "ckpt.bundle")
            puts.append(store.put(bundle_path, snap.bundle, "application/x-git-bundle"))
        await asyncio.gather(*puts)

    def write(s: Session) -> RunCheckpoint:
        found = boundary_at(s, run.id, turn)
        if found is not None:
            return found
        changed = snap is not None and snap.changed
        seq = None
        if changed:
            last = s.execute(
                select(func.max(RunCheckpoint.seq)).where(col(RunCheckpoint.run_id) == run.id)
            ).scalar()
            seq = int(last or 0) + 1
        files, ins, dels = snap.stats if snap is not None and changed else (0, 0, 0)
        row = RunCheckpoint(
            id=new_id("ckp"),
            run_id=run.id,
            turn=turn,
            changed=changed,
            seq=seq,
            base_sha=base,
            tree_sha=snap.tree if snap is not None else None,
            commit_sha=snap.commit if snap is not None else None,
            files=files,
            insertions=ins,
            deletions=dels,
            bundle_path=bundle_path,
            bundle_size=snap.bundle_size if snap is not None and changed else None,
            diff_truncated=bool(snap and snap.diff_truncated),
            created_at=utcnow(),
        )
        s.add(row)
        s.flush()
        return row

    try:
        return await db.transact(write)
    except IntegrityError:  # a concurrent attempt recorded it: that one stands
        found: RunCheckpoint | None = await db.read(lambda s: boundary_at(s, run.id, turn))
        if found is None:
            raise
        return found


def boundary_at(s: Session, run_id: str, turn: int) -> RunCheckpoint | None:
    return (
        s.execute(
            select(RunCheckpoint).where(
                col(RunCheckpoint.run_id) == run_id, col(RunCheckpoint.turn) == turn
            )
        )
        .scalars()
        .first()
    )


def checkpoint_object(row: RunCheckpoint) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "checkpoint",
        "turn": row.turn,
        "seq": row.seq,
        "treeSha": row.tree_sha,
        "files": row.files,
        "insertions": row.insertions,
        "deletions": row.deletions,
        "createdAt": iso(row.created_at),
    }


def listed() -> list[Any]:
    """The conditions of the checkpoints a listing shows (the changed ones)."""
    return [col(RunCheckpoint.changed).is_(True)]


def expired(row: RunCheckpoint, retention_days: float, now: datetime | None = None) -> bool:
    return (now or utcnow()) - row.created_at > timedelta(days=retention_days)


def check_kept(row: RunCheckpoint, retention_days: float) -> None:
    """``CheckpointExpired`` (410) for a checkpoint past retention or never kept."""
    if expired(row, retention_days):
        raise CheckpointExpired(
            f"the checkpoint of turn {row.turn} of {row.run_id} is older than the retention "
            f"of {retention_days:g} days"
        )
    if row.changed and row.bundle_path is None:
        raise CheckpointExpired(
            f"the checkpoint of turn {row.turn} of {row.run_id} was larger than the bound "
            "and its files were not kept"
        )


def last_boundary(s: Session, run_id: str) -> int:
    """The highest turn whose boundary the run passed (0: none)."""
    got = s.execute(
        select(func.max(RunCheckpoint.turn)).where(col(RunCheckpoint.run_id) == run_id)
    ).scalar()
    return int(got or 0)


def sources_branches(s: Session, run: Run) -> frozenset[str]:
    """The branches the runs ``run`` was forked from (up the chain) forwarded upstream: a
    fork does not push to them (it would move its source's outputs)."""
    taken: set[str] = set()
    for _ in range(MAX_LINEAGE):
        origin = run.forked_from or {}
        parent = s.get(Run, str(origin["runId"])) if origin.get("runId") else None
        if parent is None or parent.org_id != run.org_id:
            break
        taken |= {str(o["name"]) for o in parent.outputs or [] if o.get("type") == "branch"}
        run = parent
    return frozenset(taken)


@dataclass(frozen=True)
class CodeSource:
    """What a fork's worktree is restored from: a checkpoint (its bundle) on top of the
    base commit, or the base commit alone (``checkpoint`` None)."""

    base_sha: str | None
    checkpoint: RunCheckpoint | None


def code_at(s: Session, run: Run, turn: int, retention_days: float) -> CodeSource:
    """The worktree of ``run`` at the end of ``turn``: its latest checkpoint up to that
    turn; before its first one, what it was itself restored from (a fork), else its base.
    Raises ``CheckpointExpired`` when that checkpoint is no longer kept."""
    for _ in range(MAX_LINEAGE):
        row = (
            s.execute(
                select(RunCheckpoint)
                .where(
                    col(RunCheckpoint.run_id) == run.id,
                    col(RunCheckpoint.turn) <= turn,
                    col(RunCheckpoint.changed).is_(True),
                )
                .order_by(col(RunCheckpoint.turn).desc())
                .limit(1)
            )
            .scalars()
            .first()
        )
        if row is not None:
            check_kept(row, retention_days)
            return CodeSource(row.base_sha, row)
        origin = run.forked_from or {}
        parent = (
            s.get(Run, origin.get("runId")) if origin.get("restore") != "conversation" else None
        )
        if parent is None or parent.org_id != run.org_id:
            boundary = boundary_at(s, run.id, turn)
            return CodeSource(boundary.base_sha if boundary else None, None)
        run, turn = parent, int(origin.get("turn", 0))
    return CodeSource(None, None)
