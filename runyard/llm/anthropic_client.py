"""The ``anthropic`` model client: the official SDK, streaming, with prompt caching.

The SDK's own retries are off: Temporal retries the model-turn activity, the one retry
layer, and every attempt after the first is visible in the event log as ``turn.retried``.

The system prompt and the tool list carry ``cache_control`` so every turn after the first
reads them from the cache. ``ANTHROPIC_BASE_URL`` is honoured (tests point it at a local
server that speaks the Messages API stream format).
"""

from __future__ import annotations

from typing import Any, cast

import anthropic

from runyard.llm.base import ModelError, ModelRequest, ModelResponse, TextSink, TurnUsage


class AnthropicModel:
    def __init__(self, *, api_key: str | None, base_url: str | None) -> None:
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0)

    async def stream(self, request: ModelRequest, on_text: TextSink) -> ModelResponse:
        tools = [dict(t) for t in request.tools]
        if tools:
            tools[-1]["cache_control"] = {"type": "ephemeral"}
        system = [{"type": "text", "text": request.system, "cache_control": {"type": "ephemeral"}}]
        try:
            async with self._client.messages.stream(
                model=request.model,
                max_tokens=request.max_tokens,
                system=cast(Any, system),
                tools=cast(Any, tools),
                messages=cast(Any, request.messages),
            ) as stream:
                async for event in stream:
                    if event.type == "text":
                        await on_text(event.text)
                final = await stream.get_final_message()
        except anthropic.APIStatusError as exc:
            retryable = exc.status_code in (408, 409, 429) or exc.status_code >= 500
            raise ModelError(f"{exc.status_code}: {exc.message}", retryable=retryable) from exc
        except anthropic.APIConnectionError as exc:
            raise ModelError(f"connection error: {exc}", retryable=True) from exc
        except (OSError, anthropic.AnthropicError, ValueError) as exc:
            # A stream cut mid-way surfaces as the HTTP library's own error, not the SDK's.
            raise ModelError(
                f"stream interrupted: {type(exc).__name__}: {exc}", retryable=True
            ) from exc
        except Exception as exc:
            if type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "h11"):
                raise ModelError(
                    f"stream interrupted: {type(exc).__name__}: {exc}", retryable=True
                ) from exc
            raise
        content = [_block(b) for b in final.content]
        u = final.usage
        return ModelResponse(
            content=content,
            stop_reason=final.stop_reason or "end_turn",
            usage=TurnUsage(
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                cache_read_tokens=u.cache_read_input_tokens or 0,
                cache_write_tokens=u.cache_creation_input_tokens or 0,
            ),
        )


def _block(block: Any) -> dict[str, Any]:
    """A content block as a dict. A tool call keeps its input exactly as the model sent
    it: a JSON dump would turn a NaN into null silently, and the tool-call path must see
    it to refuse the call (``activities/agent.py``)."""
    out: dict[str, Any] = block.model_dump(mode="json", exclude_none=True)
    if out.get("type") == "tool_use":
        out["input"] = block.input
    return out
