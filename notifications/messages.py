"""The payloads that notification workflows and activities exchange (in Temporal's
history: fields may be added, with defaults, never renamed). Their own module, so the
workflows and the activities import these and not each other."""

from __future__ import annotations

from pydantic import BaseModel

DELIVERY_WORKFLOW = "DeliveryWorkflow"


class AttemptInput(BaseModel):
    delivery_id: str
    attempt: int
    last: bool = False


class AttemptOutcome(BaseModel):
    status: str  # retry | delivered | failed | gone | forbidden | cancelled
    retry_after: float | None = None


class DeliveryInput(BaseModel):
    delivery_id: str
    schedule: list[float]


class PumpInput(BaseModel):
    # How long one activity sweeps before it hands back to its workflow.
    seconds: float = 600.0
    # At most one sweep this often (SQLite: a look at its change counter this often).
    every: float = 0.2
    # Postgres: a sweep this often even when no notice came. A notice is lost only while
    # the pump is not connected, and it sweeps when it connects again; this is for a
    # store without the trigger that sends them (restored without it, say).
    sweep_every: float = 10.0
