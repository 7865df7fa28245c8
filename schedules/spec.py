"""A schedule's ``spec`` and ``overlap`` as the API takes them, checked (400
``SCHEDULE_SPEC_INVALID``), and as Temporal takes them (``ScheduleSpec``,
``SchedulePolicy``)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from temporalio.client import (
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from runyard.errors import ScheduleSpecInvalid

MIN_INTERVAL_SECONDS = 60
MAX_JITTER_SECONDS = 24 * 3600
Overlap = Literal["skip", "buffer_one", "buffer_all", "cancel_other", "allow_all"]
OVERLAP: dict[str, ScheduleOverlapPolicy] = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "buffer_one": ScheduleOverlapPolicy.BUFFER_ONE,
    "buffer_all": ScheduleOverlapPolicy.BUFFER_ALL,
    "cancel_other": ScheduleOverlapPolicy.CANCEL_OTHER,
    "allow_all": ScheduleOverlapPolicy.ALLOW_ALL,
}


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Interval(_Camel):
    every_seconds: int
    offset_seconds: int = 0


class SpecBody(_Camel):
    """When the schedule fires: ``cron`` expressions or an ``interval``, in ``timezone``."""

    cron: list[str] | None = Field(default=None, max_length=20)
    interval: Interval | None = None
    timezone: str = Field(default="UTC", max_length=64)
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    jitter_seconds: int = 0

    def wire(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)


# One cron field: *, ?, a value, a range, a list of them, each with an optional /step.
_NAMES = {
    3: "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC",
    4: "SUN|MON|TUE|WED|THU|FRI|SAT",
}
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def _cron_problem(expr: str) -> str | None:
    """Why ``expr`` is not a five-field cron expression (or a macro), or None."""
    text = expr.strip()
    if text.lower() in _MACROS:
        return None
    fields = text.split()
    if len(fields) != 5:
        return f"'{expr}' has {len(fields)} fields; a cron expression has 5 (m h dom mon dow)"
    for i, field in enumerate(fields):
        lo, hi = _BOUNDS[i]
        names = _NAMES.get(i)
        value = rf"(\d+{'|' + names if names else ''})"
        part = re.compile(rf"^(\*|\?|{value}(-{value})?)(/\d+)?$", re.IGNORECASE)
        for item in field.split(","):
            if not part.match(item):
                return f"'{field}' is not a valid {_FIELD_NAMES[i]} field in '{expr}'"
            # Digits are counted before they are read: Python refuses to read an integer
            # of over 4300 digits (a 500), Temporal one over 64 bits.
            for number in re.findall(r"\d+", item.split("/")[0]):
                if len(number) > 4 or not lo <= int(number) <= hi:
                    return f"{number[:10]} is out of range {lo}-{hi} for the {_FIELD_NAMES[i]}"
            step = item.split("/")[1] if "/" in item else None
            if step is not None and (len(step) > 4 or int(step) == 0):
                return f"a step of {step[:10]} in '{field[:100]}' (1 to 9999)"
    if fields[4] in ("*", "?") and _no_such_day(fields[2], fields[3]):
        return f"'{expr}' never fires: no month it names has that day"
    return None


_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _values(field: str, lo: int, hi: int, names: list[str] | None = None) -> set[int]:
    """The numbers a (checked) cron field names."""
    out: set[int] = set()
    for item in field.split(","):
        span, _, step = item.partition("/")
        ends = [
            names.index(e.upper()) + 1 if names and e.upper() in names else int(e)
            for e in span.split("-")
            if e not in ("*", "?")
        ]
        first, last = (ends[0], ends[-1]) if ends else (lo, hi)
        if step and len(ends) == 1:  # "5/15": from 5 to the end
            last = hi
        out.update(range(first, last + 1, int(step or 1)))
    return out


def _no_such_day(dom: str, month: str) -> bool:
    """Whether every day of month ``dom`` names is past the end of every month named
    (``0 9 31 2 *``: Temporal takes it, and it never fires)."""
    days = _values(dom, 1, 31)
    months = _values(month, 1, 12, _NAMES[3].split("|"))
    return bool(days and months) and min(days) > max(_DAYS_IN_MONTH[m - 1] for m in months)


def check(spec: SpecBody) -> None:
    """400 ``SCHEDULE_SPEC_INVALID`` for what Temporal could not follow, or a clock that
    fires more often than once a minute."""
    if (spec.cron is None) == (spec.interval is None):
        raise ScheduleSpecInvalid("give either cron or interval", field="spec")
    if spec.cron is not None:
        if not spec.cron:
            raise ScheduleSpecInvalid("at least one cron expression", field="spec.cron")
        for expr in spec.cron:
            if problem := _cron_problem(expr):
                raise ScheduleSpecInvalid(problem, field="spec.cron", kind="invalid_cron")
    if spec.interval is not None:
        every, offset = spec.interval.every_seconds, spec.interval.offset_seconds
        if every < MIN_INTERVAL_SECONDS:
            raise ScheduleSpecInvalid(
                f"must be at least {MIN_INTERVAL_SECONDS} seconds",
                field="spec.interval.everySeconds",
                kind="too_small",
            )
        if not 0 <= offset < every:
            raise ScheduleSpecInvalid(
                "must be at least 0 and less than everySeconds",
                field="spec.interval.offsetSeconds",
            )
    try:
        ZoneInfo(spec.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleSpecInvalid(
            f"unknown time zone '{spec.timezone}' (an IANA name, e.g. Europe/Paris)",
            field="spec.timezone",
            kind="invalid_timezone",
        ) from None
    if not 0 <= spec.jitter_seconds <= MAX_JITTER_SECONDS:
        raise ScheduleSpecInvalid(f"must be 0 to {MAX_JITTER_SECONDS}", field="spec.jitterSeconds")
    if spec.start_at and spec.end_at and spec.end_at <= spec.start_at:
        raise ScheduleSpecInvalid("must be after startAt", field="spec.endAt")


def temporal_spec(spec: SpecBody) -> ScheduleSpec:
    intervals = []
    if spec.interval is not None:
        intervals.append(
            ScheduleIntervalSpec(
                every=timedelta(seconds=spec.interval.every_seconds),
                offset=timedelta(seconds=spec.interval.offset_seconds) or None,
            )
        )
    return ScheduleSpec(
        cron_expressions=[e.strip() for e in spec.cron or []],
        intervals=intervals,
        time_zone_name=spec.timezone,
        start_at=spec.start_at,
        end_at=spec.end_at,
        jitter=timedelta(seconds=spec.jitter_seconds) or None,
    )


def temporal_policy(overlap: str, catchup_window_seconds: int) -> SchedulePolicy:
    # Pause on failure is Runyard's (the fire workflow pauses with a note and a webhook),
    # not Temporal's: a fire whose run failed completes normally.
    return SchedulePolicy(
        overlap=OVERLAP[overlap],
        catchup_window=timedelta(seconds=catchup_window_seconds),
        pause_on_failure=False,
    )


def parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))
