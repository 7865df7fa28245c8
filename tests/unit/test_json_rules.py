"""The JSON rules (runyard/jsonsafe.py), model usage bounds and the codes runs end with."""

from __future__ import annotations

import json

import pytest
from temporalio.exceptions import ActivityError, ApplicationError

from runyard.jsonsafe import (
    MAX_DEPTH,
    json_problem,
    loads_strict,
    storable,
    store_dumps,
    store_loads,
)
from runyard.llm.base import MAX_TURN_TOKENS, ModelError, TurnUsage
from workflows.outcome import cause_of


def test_the_json_rules() -> None:
    """Issue 23, items 13 and 14: one check for NUL, non-finite numbers and depth."""

    def nested(n: int, leaf: object) -> object:
        for _ in range(n):
            leaf = [leaf]
        return leaf

    assert json_problem(nested(MAX_DEPTH, 1)) is None  # 32 levels
    assert "deeper than 32" in str(json_problem(nested(MAX_DEPTH + 1, 1)))
    assert "deeper" in str(json_problem(nested(5000, 1)))  # no recursion limit
    assert "NUL" in str(json_problem({"k\x00": 1}))
    assert "NUL" in str(json_problem(nested(MAX_DEPTH, "\x00")))
    for bad in (float("nan"), float("inf"), float("-inf")):
        assert "non-finite" in str(json_problem({"a": [bad]}))
    for text in ("NaN", "[Infinity]", '{"a": -Infinity}', "[" * 100_000 + "]" * 100_000):
        with pytest.raises(ValueError):
            loads_strict(text)
    assert loads_strict('{"a": [1.5, "x"]}') == {"a": [1.5, "x"]}
    assert json.loads(store_dumps({"a": float("nan"), "b": [float("inf")]})) == {
        "a": None,
        "b": [None],
    }
    assert store_loads('{"a": NaN, "b": [Infinity, 2]}') == {"a": None, "b": [None, 2]}
    # What a model sent, as the store keeps it: no NaN, no NUL (Postgres text refuses it).
    assert storable({"k\x00": ["a\x00", float("nan"), 1]}) == {"k\ufffd": ["a\ufffd", None, 1]}


def test_turn_usage_is_bounded() -> None:
    """Issue 23, item 15: impossible counts are a MODEL_ERROR, never retried."""
    assert TurnUsage(input_tokens=MAX_TURN_TOKENS).input_tokens == MAX_TURN_TOKENS
    for bad in (10**25, -1, 1.5, True, None):
        with pytest.raises(ModelError) as caught:
            TurnUsage(output_tokens=bad)  # type: ignore[arg-type]
        assert caught.value.code == "MODEL_ERROR" and not caught.value.should_retry


def test_only_contract_codes_end_a_run() -> None:
    """Issue 23, item 15: an activity's unexpected exception (typed by Temporal with its
    Python class) ends the run INTERNAL_ERROR; a Runyard error keeps its code."""
    odd = cause_of(ApplicationError("int too large", type="OverflowError"))
    assert (odd.type, odd.message) == ("INTERNAL_ERROR", "OverflowError: int too large")
    known = cause_of(ApplicationError("boom", type="MODEL_ERROR"))
    assert (known.type, known.message) == ("MODEL_ERROR", "boom")
    wrapped = ActivityError(
        "activity failed",
        scheduled_event_id=1,
        started_event_id=2,
        identity="w",
        activity_type="t",
        activity_id="1",
        retry_state=None,
    )
    wrapped.__cause__ = ApplicationError("bad", type="ToolError")
    assert cause_of(wrapped).type == "INTERNAL_ERROR"
