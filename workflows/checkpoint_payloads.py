"""The checkpoint step's activity input and result (``workflows/checkpoints.py``)."""

from __future__ import annotations

from pydantic import BaseModel

from workflows.payloads import SandboxRef


class CheckpointInput(BaseModel):
    run_id: str
    turn: int
    sandbox: SandboxRef


class CheckpointResult(BaseModel):
    changed: bool = False
    seq: int | None = None
