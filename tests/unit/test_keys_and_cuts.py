"""Pure logic under the event log and the output caps: idempotency keys (one key per
thing, never shared by two), the cost arithmetic the cost guardrail reads, and where
output is cut to a size, that the cut never yields bad text or loses count."""

from __future__ import annotations

import itertools
import json

import pytest

from activities.sandbox_setup import SetupOutput
from runyard.llm.pricing import add_turn_usage, empty_usage, price_for
from runyard.sandbox.local_sandbox import _clip as clip_runner_output
from runyard.sandbox.runner import HEADER, encode
from runyard.sandbox.runner_procs import Capped
from runyard.store.credits import charge_key
from runyard.store.events import TERMINAL_EVENT_KEY
from runyard.store.transcript import assistant_key, result_key
from runyard.tools import MAX_OUTPUT_CHARS, ToolOutput

# --- event and message keys ----------------------------------------------------------------

TURNS = [1, 2, 9, 10, 11, 12, 100, 101]
CALLS = ["a", "1", "toolu_01", "1.a", "a.1"]


def test_message_keys_are_distinct_per_turn_and_call() -> None:
    keys = [assistant_key(t) for t in TURNS]
    keys += [result_key(t, c) for t, c in itertools.product(TURNS, CALLS)]
    assert len(set(keys)) == len(keys)
    assert TERMINAL_EVENT_KEY not in keys


def test_message_keys_are_stable() -> None:
    """Keys are the idempotency of retried activities: the same turn gives the same key
    on every call (and in every process)."""
    assert assistant_key(3) == assistant_key(3) == "turn3.assistant"
    assert result_key(3, "toolu_9") == "turn3.result.toolu_9"


def test_charge_keys_are_distinct_per_run_and_turn() -> None:
    runs = ["run_a", "run_a1", "run_1", "run_b"]
    keys = [charge_key(r, t) for r, t in itertools.product(runs, TURNS)]
    assert len(set(keys)) == len(keys)
    assert charge_key("run_a", 1) == "charge.run_a.turn1"  # stored: it may not change


# --- the cost arithmetic -------------------------------------------------------------------


def test_cost_is_priced_on_the_running_totals() -> None:
    """A thousand small turns cost what their tokens cost together: each turn reprices
    the totals, so rounding a turn's cost never drifts the sum the cost cap compares."""
    u = empty_usage()
    for _ in range(1000):
        u = add_turn_usage(u, "sonnet", inp=333, out=77, cache_read=51, cache_write=13)
    p = price_for("sonnet")
    exact = (333 * p.input + 77 * p.output + 51 * p.cache_read + 13 * p.cache_write) / 1000
    assert u["turns"] == 1000
    assert u["costUsd"] == round(exact, 6)
    assert u["creditsUsed"] == round(exact * 1000)
    assert u["cacheHitRate"] == round(51 / (333 + 51 + 13), 4)


def test_usage_with_no_input_has_no_hit_rate() -> None:
    u = add_turn_usage({}, "haiku", inp=0, out=10, cache_read=0, cache_write=0)
    assert u["cacheHitRate"] == 0.0 and u["costUsd"] == round(10 * 5.0 / 1e6, 6)


@pytest.mark.parametrize(
    ("model", "per_million_in"),
    [
        ("claude-opus-4-5", 5.0),  # the newer family is matched before the older one
        ("claude-3-opus-latest", 15.0),
        ("claude-haiku-4-5", 1.0),
        ("claude-3-5-haiku-latest", 0.8),
        ("claude-some-new-model", 3.0),  # an unknown model is priced like sonnet
        ("scripted", 3.0),
    ],
)
def test_price_families(model: str, per_million_in: float) -> None:
    assert price_for(model).input == per_million_in


# --- output cut to a size ------------------------------------------------------------------

TEXT = "aé€😀" * 1000  # 1, 2, 3 and 4 bytes per character


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 4096])
def test_capped_keeps_small_output_whole_across_chunks(chunk: int) -> None:
    data = TEXT[:50].encode()
    capped = Capped(1024)
    for i in range(0, len(data), chunk):
        capped.add(data[i : i + chunk])
    assert capped.text() == TEXT[:50]


@pytest.mark.parametrize("cap", [2, 7, 100, 1001])
def test_capped_cuts_by_bytes_and_counts_the_cut(cap: int) -> None:
    data = TEXT.encode()
    capped = Capped(cap)
    streamed = "".join(capped.add(data[i : i + 999]) for i in range(0, len(data), 999))
    text = capped.text()
    text.encode()  # no surrogates: valid text, whatever the cut split
    half = cap // 2
    assert capped.total == len(data)
    assert len(capped.head) == half and len(capped.tail) == half
    assert f"[{len(data) - 2 * half} bytes cut]" in text
    assert streamed == data[:half].decode("utf-8", "replace")
    assert text.endswith(data[-half:].decode("utf-8", "replace"))


@pytest.mark.parametrize("cap", [1, 2, 3, 4, 5, 6, 7, 10])
def test_setup_output_never_splits_a_character(cap: int) -> None:
    out = SetupOutput(cap)
    out.add("stdout", TEXT[:20])
    out.add("stdout", "more")
    (batch,) = out.take(final=True)
    kept = batch["output"]
    assert "\ufffd" not in kept and TEXT.startswith(kept)
    assert len(kept.encode()) <= cap
    assert out.seen["stdout"] == len(TEXT[:20].encode()) + 4
    assert out.left_out == out.seen["stdout"] - cap


def test_setup_output_batches_whole_lines_until_the_end() -> None:
    out = SetupOutput(1000)
    out.add("stdout", "one\ntw")
    out.add("stderr", "é\n")
    assert out.take(final=False) == [
        {"stream": "stderr", "output": "é\n"},
        {"stream": "stdout", "output": "one\n"},
    ]
    out.add("stdout", "o")
    assert out.take(final=False) == []
    assert out.take(final=True) == [{"stream": "stdout", "output": "two"}]


@pytest.mark.parametrize("cap", [10, 11, 1000])
def test_runner_output_is_clipped_again_by_characters(cap: int) -> None:
    text = TEXT[:500]
    clipped = clip_runner_output(text, cap)
    if cap >= len(text):
        assert clipped == text
    else:
        half = cap // 2
        assert clipped.startswith(text[:half]) and clipped.endswith(text[-half:])
        assert f"[{len(text) - cap} characters cut]" in clipped
    assert clip_runner_output(None, cap) == "" and clip_runner_output(b"x", cap) == ""


def test_tool_output_is_clipped_to_its_cap() -> None:
    from runyard.tools.workspace import clip as _clip

    assert _clip("é" * MAX_OUTPUT_CHARS) == "é" * MAX_OUTPUT_CHARS
    long = "é" * (MAX_OUTPUT_CHARS + 11)
    clipped = _clip(long)
    assert "[11 characters cut]" in clipped
    assert clipped.count("é") == 2 * (MAX_OUTPUT_CHARS // 2)
    assert ToolOutput(clipped).text == clipped


def test_runner_frames_a_name_that_is_not_utf8() -> None:
    """A file name with a byte that is not UTF-8 (a lone surrogate in Python) is framed
    with a replacement character, never as bytes that make the reader's JSON fail."""
    frame = encode({"name": "bad\udcff.txt"})
    (size,) = HEADER.unpack(frame[: HEADER.size])
    body = frame[HEADER.size :]
    assert size == len(body)
    assert json.loads(body.decode("utf-8")) == {"name": "bad?.txt"}
