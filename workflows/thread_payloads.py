"""What crosses Temporal for thread strategies (``runyard/runs/thread_order.py``): the
``supersede`` update of ``RunWorkflow`` and the activities of ``activities/threads.py``.
New fields get defaults (see ``workflows/payloads.py``)."""

from __future__ import annotations

from pydantic import BaseModel


class SupersedeRequest(BaseModel):
    """Stop at the next turn boundary and end ``cancelled`` / ``RUN_SUPERSEDED``."""

    by: str  # the run that supersedes this one


class SupersedeResult(BaseModel):
    status: str  # the run's status when the request was taken


class CloseCallsInput(BaseModel):
    """Give every tool call of ``turn`` that has no result an error result."""

    run_id: str
    turn: int
    message: str


class AdvanceInput(BaseModel):
    """A run of the thread ended: start the next one waiting, if any."""

    run_id: str
    org_id: str
    thread_id: str
