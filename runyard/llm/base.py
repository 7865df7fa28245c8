"""The ``ModelClient`` protocol. Messages and content blocks use the Anthropic format."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from runyard.errors import ModelError

__all__ = ["ModelError"]

TextSink = Callable[[str], Awaitable[None]]


# No model turn reads or writes more tokens than this (the largest context windows hold
# about a million); a client reporting more is wrong, and such numbers overflowed the
# store's integers and ended runs with a Python exception's name as their error code.
MAX_TURN_TOKENS = 1_000_000_000


@dataclass(frozen=True)
class TurnUsage:
    """One turn's token counts, as a model client reports them: whole numbers from 0 to
    ``MAX_TURN_TOKENS``, or the turn fails with ``MODEL_ERROR`` (never retried: the
    provider's report, not the connection, is at fault)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
            value = getattr(self, name)
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 0 <= value <= MAX_TURN_TOKENS
            ):
                raise ModelError(
                    f"the model reported an impossible usage: {name} = {value!r} "
                    f"(a turn uses 0 to {MAX_TURN_TOKENS:,} tokens)",
                    retryable=False,
                )


@dataclass(frozen=True)
class ModelRequest:
    model: str
    system: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    max_tokens: int = 8192


@dataclass
class ModelResponse:
    content: list[dict[str, Any]]
    stop_reason: str
    usage: TurnUsage = field(default_factory=TurnUsage)

    @property
    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.content if b.get("type") == "text")

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [b for b in self.content if b.get("type") == "tool_use"]


class ModelClient(Protocol):
    async def stream(self, request: ModelRequest, on_text: TextSink) -> ModelResponse:
        """Run one model turn, passing text to ``on_text`` as it arrives."""
        ...
