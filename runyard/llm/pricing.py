"""Model names, aliases and the per-model price table used for ``usage.costUsd``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCRIPTED = "scripted"

ALIASES: dict[str, str] = {
    "sonnet": "claude-sonnet-4-5",
    "opus": "claude-opus-4-5",
    "haiku": "claude-haiku-4-5",
}


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float
    cache_write: float
    cache_read: float


# Family prices; a model id is priced by the family its name contains.
_FAMILY_PRICES: dict[str, Price] = {
    "opus-4-5": Price(5.0, 25.0, 6.25, 0.50),
    "opus": Price(15.0, 75.0, 18.75, 1.50),
    "sonnet": Price(3.0, 15.0, 3.75, 0.30),
    "haiku-4-5": Price(1.0, 5.0, 1.25, 0.10),
    "haiku": Price(0.80, 4.0, 1.0, 0.08),
}


def resolve_model(name: str) -> str:
    """The provider model id for a run's ``model`` field (``scripted`` stays itself)."""
    name = name.strip()
    if name.startswith("anthropic/"):
        name = name.removeprefix("anthropic/")
    return ALIASES.get(name, name)


def is_valid_model(name: str) -> bool:
    model = resolve_model(name)
    return model == SCRIPTED or model.startswith("claude-")


def needs_anthropic_key(name: str) -> bool:
    return resolve_model(name) != SCRIPTED


def price_for(model: str) -> Price:
    model = resolve_model(model)
    if model == SCRIPTED:  # priced like sonnet so cost guardrails can be exercised
        return _FAMILY_PRICES["sonnet"]
    for family, price in _FAMILY_PRICES.items():
        if family in model:
            return price
    return _FAMILY_PRICES["sonnet"]


def empty_usage() -> dict[str, Any]:
    return {
        "turns": 0,
        "inputTokens": 0,
        "outputTokens": 0,
        "cacheReadTokens": 0,
        "cacheWriteTokens": 0,
        "cacheHitRate": 0.0,
        "costUsd": 0.0,
        "creditsUsed": 0,
    }


def add_turn_usage(
    usage: dict[str, Any], model: str, *, inp: int, out: int, cache_read: int, cache_write: int
) -> dict[str, Any]:
    """``usage`` with one more turn's tokens added, cost and cache hit rate recomputed."""
    u = {**empty_usage(), **usage}
    u["turns"] += 1
    u["inputTokens"] += inp
    u["outputTokens"] += out
    u["cacheReadTokens"] += cache_read
    u["cacheWriteTokens"] += cache_write
    p = price_for(model)
    cost = (
        u["inputTokens"] * p.input
        + u["outputTokens"] * p.output
        + u["cacheWriteTokens"] * p.cache_write
        + u["cacheReadTokens"] * p.cache_read
    ) / 1_000_000
    u["costUsd"] = round(cost, 6)
    u["creditsUsed"] = round(cost * 1000)
    denom = u["inputTokens"] + u["cacheReadTokens"] + u["cacheWriteTokens"]
    u["cacheHitRate"] = round(u["cacheReadTokens"] / denom, 4) if denom else 0.0
    return u
