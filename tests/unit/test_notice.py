"""Postgres's notice of new events (runyard/store/notice.py): the events ride along when
they fit and read back as the store would give them; otherwise the hub is told to read."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from runyard.jsonsafe import store_dumps, store_loads
from runyard.store.notice import MAX_BYTES, read_notice
from runyard.store.notice import notice as make_notice

NOW = datetime(2026, 12, 6, 7, 8, 9, 123456, tzinfo=UTC)


def _row(seq: int, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": "run_a",
        "seq": seq,
        "key": f"k{seq}",
        "type": "tool.result",
        "data": data,
        "created_at": NOW,
    }


def test_the_events_ride_along_and_read_back_as_the_store_gives_them() -> None:
    data = {"z": 1, "a": ["é", "\u2028", None, 1.5], "nested": {"b": True, "a": "x\ny"}}
    note = make_notice("run_a", [_row(4, data), _row(5, {})])
    assert note.startswith("run_a:5\n")
    run_id, events = read_notice(note)
    assert run_id == "run_a" and events is not None
    assert [(e.seq, e.type, e.created_at) for e in events] == [
        (4, "tool.result", NOW),
        (5, "tool.result", NOW),
    ]
    # What the store's JSON column would read back, key order included.
    assert events[0].data == store_loads(store_dumps(data))
    assert list(events[0].data or {}) == ["z", "a", "nested"]


def test_a_notice_that_would_not_fit_or_is_not_standard_json_carries_the_ids_alone() -> None:
    big = make_notice("run_a", [_row(1, {"text": "x" * MAX_BYTES})])
    assert big == "run_a:1" and read_notice(big) == ("run_a", None)
    nan = make_notice("run_a", [_row(2, {"n": math.nan})])
    assert nan == "run_a:2" and read_notice(nan) == ("run_a", None)
    wide = make_notice("run_a", [_row(3, {"t": "é" * (MAX_BYTES // 2)})])
    assert wide == "run_a:3"  # the limit is in bytes, not characters


def test_a_notice_of_the_old_form_or_a_broken_one_means_read_the_store() -> None:
    assert read_notice("run_a:7") == ("run_a", None)
    assert read_notice("run_a:7\n[[1,2]]") == ("run_a", None)
    assert read_notice("run_a:7\nnot json") == ("run_a", None)
