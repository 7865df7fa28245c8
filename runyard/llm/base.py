"""The ``ModelClient`` protocol. Messages and content blocks use the Anthropic format."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from runyard.errors import ModelError

__all__ = ["ModelError"]

TextSink = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class TurnUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


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
