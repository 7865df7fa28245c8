"""The schedules' tables (migration 0010): a schedule as its client described it, and
each of its fires, started or skipped. Temporal holds the schedule itself (same id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from runyard.db.types import UTCDateTime, utcnow


def _json(**kw: Any) -> Any:
    return Field(sa_column=Column(JSON, nullable=True), **kw)


def _ts(nullable: bool = True) -> Any:
    if nullable:
        return Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class ScheduleRow(SQLModel, table=True):
    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_org_created", "org_id", "created_at"),)
    id: str = Field(primary_key=True)
    org_id: str = Field(foreign_key="organizations.id")
    name: str | None = None
    spec: dict[str, Any] = _json(default_factory=dict)  # camelCase, as the API shows it
    run: dict[str, Any] = _json(default_factory=dict)  # the POST /v1/runs body, camelCase
    thread_id: str | None = None
    template: str = "default"
    overlap: str = "skip"
    catchup_window_seconds: int = 3600
    pause_on_failure: bool = False
    max_runs: int | None = None
    enabled: bool = True
    paused: bool = False
    notes: list[dict[str, Any]] = _json(default_factory=list)  # [{"at", "note"}], newest last
    metadata_: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("metadata", JSON, nullable=True)
    )
    # The creating API's active-run cap: it travels with each fire, as with a run.
    max_active_runs: int | None = None
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class ScheduleFire(SQLModel, table=True):
    """One action of the schedule: ``fired`` (its run) or ``skipped`` (and why)."""

    __tablename__ = "schedule_fires"
    __table_args__ = (
        UniqueConstraint("workflow_id", name="uq_schedule_fires_workflow"),
        Index("ix_schedule_fires_schedule_created", "schedule_id", "created_at"),
    )
    id: str = Field(primary_key=True)
    schedule_id: str
    org_id: str
    workflow_id: str
    scheduled_at: datetime = _ts(nullable=False)
    run_id: str | None = None
    status: str  # fired | skipped
    reason: str | None = None
    detail: str | None = None
    created_at: datetime = _ts(nullable=False)
