"""The checkpoint object of the HTTP contract (issue 26), defined once: the API renders
it and ``runyard.client`` parses it."""

from __future__ import annotations

from pydantic import Field

from runyard.run_model import ApiModel, Pagination, Rfc3339


class Checkpoint(ApiModel):
    """The run's worktree at the end of a turn that changed it (``files``, ``insertions``
    and ``deletions``: against the previous checkpoint)."""

    id: str = Field(examples=["ckp_0f9e"])
    object: str = Field(default="checkpoint", examples=["checkpoint"])
    turn: int
    seq: int
    tree_sha: str
    files: int
    insertions: int
    deletions: int
    created_at: Rfc3339


class CheckpointPage(ApiModel):
    data: list[Checkpoint]
    pagination: Pagination
