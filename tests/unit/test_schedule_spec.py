"""A schedule's spec: what is refused as SCHEDULE_SPEC_INVALID (naming the field), and
how an accepted one becomes Temporal's ScheduleSpec and SchedulePolicy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import ScheduleOverlapPolicy

from runyard.errors import ScheduleSpecInvalid
from schedules.spec import SpecBody, check, temporal_policy, temporal_spec


@pytest.mark.parametrize(
    "cron",
    [
        "0 9 * * 1-5",
        "*/15 * * * *",
        "0 0 1,15 * *",
        "30 6 * JAN-MAR MON",
        "0 12 ? * SUN",
        "5-55/10 8-18 * * 0-7",
        "@daily",
        "@HOURLY",
        "0 9 29 2 *",  # leap years
        "0 9 31 1-2 *",
        "0 9 30-31 */2 *",
        "0 9 5/10 FEB *",
    ],
)
def test_cron_accepted(cron: str) -> None:
    check(SpecBody(cron=[cron]))


@pytest.mark.parametrize(
    "cron",
    [
        "0 9 * *",  # four fields
        "0 0 9 * * 1-5",  # six
        "61 * * * *",
        "0 24 * * *",
        "0 0 0 * *",  # day of month from 1
        "0 0 * 13 *",
        "0 0 * * 8",
        "*/0 * * * *",
        "0 9 * * MONDAY",
        "x * * * *",
        "@sometimes",
        # Numbers too long to read were a 500 (Python reads no integer of over 4300
        # digits) or Temporal's strconv error: a 400 naming the field.
        "9" * 5000 + " * * * *",
        "*/" + "9" * 5000 + " * * * *",
        "0 0 1-" + "3" * 5000 + " * *",
        "0 0 * JAN-DEC/99999999999999999999 *",
        # A day no month it names has: Temporal takes it, and it never fires.
        "0 9 31 2 *",
        "0 9 30-31 FEB *",
        "0 9 31 4,6,9,11 *",
    ],
)
def test_cron_refused(cron: str) -> None:
    with pytest.raises(ScheduleSpecInvalid) as refused:
        check(SpecBody(cron=[cron]))
    assert refused.value.field_errors[0]["field"] == "spec.cron"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({}, "spec"),
        ({"cron": ["@daily"], "interval": {"everySeconds": 60}}, "spec"),
        ({"cron": []}, "spec.cron"),
        ({"interval": {"everySeconds": 59}}, "spec.interval.everySeconds"),
        ({"interval": {"everySeconds": 60, "offsetSeconds": 60}}, "spec.interval.offsetSeconds"),
        ({"interval": {"everySeconds": 60, "offsetSeconds": -1}}, "spec.interval.offsetSeconds"),
        ({"cron": ["@daily"], "timezone": "Europe/Atlantis"}, "spec.timezone"),
        ({"cron": ["@daily"], "timezone": "../etc/passwd"}, "spec.timezone"),
        ({"cron": ["@daily"], "jitterSeconds": -1}, "spec.jitterSeconds"),
        ({"cron": ["@daily"], "jitterSeconds": 86_401}, "spec.jitterSeconds"),
        (
            {
                "cron": ["@daily"],
                "startAt": "2026-02-01T00:00:00Z",
                "endAt": "2026-01-01T00:00:00Z",
            },
            "spec.endAt",
        ),
    ],
)
def test_spec_refused_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ScheduleSpecInvalid) as refused:
        check(SpecBody.model_validate(spec))
    assert refused.value.code == "SCHEDULE_SPEC_INVALID"
    assert refused.value.field_errors[0]["field"] == field


def test_temporal_spec_and_policy() -> None:
    body = SpecBody.model_validate(
        {
            "interval": {"everySeconds": 3600, "offsetSeconds": 300},
            "timezone": "Europe/Paris",
            "startAt": "2026-01-01T00:00:00Z",
            "jitterSeconds": 30,
        }
    )
    check(body)
    spec = temporal_spec(body)
    assert spec.intervals[0].every == timedelta(hours=1)
    assert spec.intervals[0].offset == timedelta(minutes=5)
    assert spec.time_zone_name == "Europe/Paris" and spec.cron_expressions == []
    assert spec.start_at == datetime(2026, 1, 1, tzinfo=UTC) and spec.end_at is None
    assert spec.jitter == timedelta(seconds=30)
    policy = temporal_policy("cancel_other", 600)
    assert policy.overlap == ScheduleOverlapPolicy.CANCEL_OTHER
    assert policy.catchup_window == timedelta(minutes=10)
    assert policy.pause_on_failure is False  # Runyard's own, with a note and a webhook
