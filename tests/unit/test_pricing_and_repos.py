from __future__ import annotations

from runyard.llm.pricing import (
    add_turn_usage,
    is_valid_model,
    needs_anthropic_key,
    resolve_model,
)


def test_model_names() -> None:
    assert resolve_model("sonnet") == "claude-sonnet-4-5"
    assert resolve_model("anthropic/claude-opus-4-5") == "claude-opus-4-5"
    assert is_valid_model("scripted") and not needs_anthropic_key("scripted")
    assert is_valid_model("claude-3-5-haiku-latest") and needs_anthropic_key("haiku")
    assert not is_valid_model("gpt-4o")


def test_usage_accumulates_and_prices() -> None:
    u = add_turn_usage({}, "scripted", inp=1_000_000, out=0, cache_read=0, cache_write=0)
    assert u["costUsd"] == 3.0 and u["turns"] == 1 and u["creditsUsed"] == 3000
    u = add_turn_usage(u, "scripted", inp=0, out=0, cache_read=1_000_000, cache_write=0)
    assert u["costUsd"] == 3.3 and u["cacheHitRate"] == 0.5 and u["turns"] == 2
    haiku = add_turn_usage({}, "haiku", inp=1_000_000, out=1_000_000, cache_read=0, cache_write=0)
    assert haiku["costUsd"] == 6.0
