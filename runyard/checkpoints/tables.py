"""The store's record of a run's turn boundaries and the checkpoints taken at them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

from runyard.db.types import UTCDateTime, utcnow


class RunCheckpoint(SQLModel, table=True):
    """One turn boundary of a run. ``changed``: the worktree differed from the previous
    checkpoint (or the base), and a checkpoint was taken (``seq`` counts those from 1);
    otherwise the row only says the boundary passed, so the turn can be forked."""

    __tablename__ = "run_checkpoints"
    __table_args__ = (UniqueConstraint("run_id", "turn", name="uq_run_checkpoints_turn"),)
    id: str = Field(primary_key=True)  # ckp_…
    run_id: str = Field(foreign_key="runs.id", index=True)
    turn: int
    changed: bool = False
    seq: int | None = None
    base_sha: str | None = None
    tree_sha: str | None = None
    commit_sha: str | None = None
    files: int = 0
    insertions: int = 0
    deletions: int = 0
    # Where the bundle and the diffs are in the ArtifactStore; None: not kept (too large).
    bundle_path: str | None = None
    bundle_size: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    diff_truncated: bool = False
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
