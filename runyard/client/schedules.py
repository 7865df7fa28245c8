"""The schedule objects of the HTTP contract as the client sees them (``/v1/schedules``),
and the requests the clients build for them."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from runyard.client._core import Call
from runyard.run_model import ApiModel, Pagination


class ScheduleNote(ApiModel):
    at: str
    note: str


class ScheduleFire(ApiModel):
    """One fire: ``fired`` (``run_id``) or ``skipped`` (``reason``, ``detail``)."""

    scheduled_at: str
    fired_at: str | None = None
    status: str
    run_id: str | None = None
    run_status: str | None = None
    reason: str | None = None
    detail: str | None = None


class Schedule(ApiModel):
    id: str
    name: str | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    run: dict[str, Any] = Field(default_factory=dict)
    thread_id: str | None = None
    overlap: str = "skip"
    catchup_window_seconds: int | None = None
    pause_on_failure: bool = False
    max_runs: int | None = None
    enabled: bool = True
    metadata: dict[str, Any] = Field(default_factory=dict)
    next_run_at: str | None = None
    upcoming: list[str] = Field(default_factory=list)
    paused: bool = False
    notes: list[ScheduleNote] = Field(default_factory=list)
    remaining_runs: int | None = None
    recent_runs: list[ScheduleFire] = Field(default_factory=list)
    created_at: str | None = None
    updated_at: str | None = None


class SchedulePage(ApiModel):
    data: list[Schedule]
    pagination: Pagination


class ScheduleTriggered(ApiModel):
    run_id: str
    schedule_id: str | None = None


class ScheduleBackfilled(ApiModel):
    schedule_id: str
    fires: int
    scheduled_times: list[str] = Field(default_factory=list)


_NAMES = {
    "thread_id": "threadId",
    "catchup_window_seconds": "catchupWindowSeconds",
    "pause_on_failure": "pauseOnFailure",
    "max_runs": "maxRuns",
}


def schedule_body(fields: dict[str, Any]) -> dict[str, Any]:
    """A create or patch body from keyword arguments (``None``: not sent)."""
    return {_NAMES.get(k, k): v for k, v in fields.items() if v is not None}


def list_schedules_call(
    enabled: bool | None, thread_id: str | None, template: str | None, page: int, limit: int
) -> Call:
    params: dict[str, Any] = {"page": page, "limit": limit}
    if enabled is not None:
        params["enabled"] = "true" if enabled else "false"
    if thread_id:
        params["threadId"] = thread_id
    if template:
        params["template"] = template
    return Call("GET", "/v1/schedules", params=params)


def note_body(note: str | None) -> dict[str, Any]:
    return {"note": note} if note else {}
