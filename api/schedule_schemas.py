"""``/v1/schedules``: request bodies and response models (camelCase on the wire)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from api.responses import Out, Rfc3339
from api.responses_runs import Pagination
from api.schemas import Body, CreateRun, Timestamp
from schedules.spec import Overlap, SpecBody

_EXAMPLE: dict[str, Any] = {
    "name": "nightly flaky-test triage",
    "spec": {"cron": ["0 9 * * 1-5"], "timezone": "Europe/Paris"},
    "run": {"prompt": "Triage the flaky tests of last night", "template": "default"},
    "overlap": "skip",
    "catchupWindowSeconds": 3600,
}


class ScheduleRunBody(CreateRun):
    """The body of ``POST /v1/runs`` without ``start``: each fire starts its run."""

    @model_validator(mode="after")
    def _no_start(self) -> ScheduleRunBody:
        if "start" in self.model_fields_set:
            raise ValueError("a schedule's run has no start: each fire starts it")
        return self


def _metadata(v: dict[str, Any] | None) -> dict[str, Any] | None:
    if v is not None and len(json.dumps(v)) > 16_384:
        raise ValueError("metadata must serialise to at most 16 KiB of JSON")
    return v


class CreateSchedule(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    name: str | None = Field(default=None, min_length=1, max_length=200)
    spec: SpecBody
    run: ScheduleRunBody
    thread_id: str | None = Field(default=None, max_length=64)
    overlap: Overlap = "skip"
    catchup_window_seconds: int = Field(default=3600, ge=10, le=365 * 86_400)
    pause_on_failure: bool = False
    max_runs: int | None = Field(default=None, ge=1, le=1_000_000)
    enabled: bool = True
    metadata: dict[str, Any] = Field(default_factory=dict)

    _check_metadata = field_validator("metadata")(_metadata)


class PatchSchedule(Body):
    """The fields to change; the others keep their values."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    spec: SpecBody | None = None
    run: ScheduleRunBody | None = None
    thread_id: str | None = Field(default=None, max_length=64)
    overlap: Overlap | None = None
    catchup_window_seconds: int | None = Field(default=None, ge=10, le=365 * 86_400)
    pause_on_failure: bool | None = None
    max_runs: int | None = Field(default=None, ge=1, le=1_000_000)
    enabled: bool | None = None
    metadata: dict[str, Any] | None = None

    _check_metadata = field_validator("metadata")(_metadata)


class PauseBody(Body):
    note: str | None = Field(default=None, max_length=1000)


class BackfillBody(Body):
    start_at: Timestamp
    end_at: Timestamp


class Note(Out):
    at: Rfc3339
    note: str


class Fire(Out):
    """One fire: ``fired`` (its run) or ``skipped`` (``reason``: active_run_cap,
    credits_exhausted, template_deleted, thread_busy, run_invalid)."""

    scheduled_at: Rfc3339
    fired_at: Rfc3339
    status: str = Field(examples=["fired"])
    run_id: str | None
    run_status: str | None
    reason: str | None
    detail: str | None


class Schedule(Out):
    id: str = Field(examples=["sch_3k9d0c2mzq1v8x7h5b4n"])
    object: str = Field(examples=["schedule"])
    name: str | None
    spec: dict[str, Any]
    run: dict[str, Any]
    thread_id: str | None
    overlap: str
    catchup_window_seconds: int
    pause_on_failure: bool
    max_runs: int | None
    enabled: bool
    metadata: dict[str, Any]
    next_run_at: Rfc3339 | None
    upcoming: list[Rfc3339]
    paused: bool
    notes: list[Note]
    remaining_runs: int | None
    recent_runs: list[Fire]
    created_at: Rfc3339
    updated_at: Rfc3339


class SchedulePage(Out):
    data: list[Schedule]
    pagination: Pagination


class TriggerAccepted(Out):
    run_id: str = Field(examples=["run_3k9d0c2mzq1v8x7h5b4n"])
    schedule_id: str


class BackfillAccepted(Out):
    schedule_id: str
    fires: int = Field(examples=[2])
    scheduled_times: list[Rfc3339]
