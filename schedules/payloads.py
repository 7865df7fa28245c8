"""What crosses Temporal for a schedule's fire: the fire workflow's input and result, and
its activities' (fields may be added, with defaults, never renamed)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from temporalio.common import SearchAttributeKey

from workflows.payloads import RunInput

FIRE_WORKFLOW = "ScheduleFireWorkflow"
# Set by Temporal on every workflow a schedule starts: the time the action is for.
SA_SCHEDULED_AT = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")


class FireInput(BaseModel):
    """The schedule's action argument, fixed when the schedule is created or changed."""

    schedule_id: str
    org_id: str
    # The creating API's active-run cap, which travels with each fire's run.
    max_active_runs: int | None = None
    # Unset for a schedule's own actions: Temporal's TemporalScheduledStartTime says it.
    scheduled_at: datetime | None = None


class FireResult(BaseModel):
    status: str  # fired | skipped | duplicate | superseded
    run_id: str | None = None
    run_status: str | None = None
    reason: str | None = None


class CreateFire(BaseModel):
    schedule_id: str
    workflow_id: str
    scheduled_at: datetime
    max_active_runs: int | None = None


class Made(BaseModel):
    """The run a fire created (queued, its workflow not yet started), or why none was."""

    run_id: str | None = None
    run_input: RunInput | None = None
    summary: str = ""
    pause_on_failure: bool = False
    skipped: str | None = None


class StartFire(BaseModel):
    schedule_id: str
    workflow_id: str
    run_id: str
    scheduled_at: datetime


class Started(BaseModel):
    started: bool
    skipped: str | None = None


class PauseFire(BaseModel):
    schedule_id: str
    note: str
    key: str  # one pause (and one schedule.paused) per key, however often retried
