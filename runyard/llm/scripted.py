"""The ``scripted`` model: offline and deterministic, for demos, tests and benchmarks.

A prompt whose first line is ``#!scripted`` holds one JSON object per line, one per
model turn (see API.md). ``{"sleep": s}`` lines make the next turn take that long;
they may also stand on a line with an action. Without a script it lists the workspace,
reads the README if there is one, and answers with a short summary.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from runyard.llm.base import ModelError, ModelRequest, ModelResponse, TextSink, TurnUsage
from runyard.store.transcript import NOTE_PREFIX

MAGIC = "#!scripted"
_ACTIONS = ("tool", "ask", "text", "fail")


class ScriptError(ValueError):
    pass


def parse_script(prompt: str) -> list[dict[str, Any]] | None:
    """The script's lines, or None when the prompt is not a script. Raises on bad lines."""
    lines = prompt.splitlines()
    if not lines or lines[0].strip() != MAGIC:
        return None
    steps: list[dict[str, Any]] = []
    for n, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        try:
            step = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ScriptError(f"line {n}: not JSON ({exc.msg})") from exc
        if not isinstance(step, dict):
            raise ScriptError(f"line {n}: must be a JSON object")
        actions = [k for k in _ACTIONS if k in step]
        if len(actions) > 1:
            raise ScriptError(f"line {n}: one of {', '.join(_ACTIONS)} per line")
        if not actions and "sleep" not in step:
            raise ScriptError(f"line {n}: needs one of tool, ask, text, fail or sleep")
        sleep = step.get("sleep", 0)
        if (
            not isinstance(sleep, int | float)
            or isinstance(sleep, bool)
            or not 0 <= sleep < math.inf  # NaN compares false: refused too
        ):
            raise ScriptError(f"line {n}: sleep must be a non-negative number")
        if "tool" in step and not isinstance(step["tool"], str):
            raise ScriptError(f"line {n}: tool must be a string")
        if "input" in step and not isinstance(step["input"], dict):
            raise ScriptError(f"line {n}: input must be an object")
        usage = step.get("usage", {})
        if not isinstance(usage, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in usage.values()
        ):
            raise ScriptError(f"line {n}: usage values must be non-negative integers")
        steps.append(step)
    return steps


def _turns(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold sleep-only lines into the turn that follows them."""
    turns: list[dict[str, Any]] = []
    pending_sleep = 0.0
    for step in steps:
        pending_sleep += float(step.get("sleep", 0))
        if any(k in step for k in _ACTIONS):
            turns.append({**step, "sleep": pending_sleep})
            pending_sleep = 0.0
    if pending_sleep or not turns:
        turns.append({"text": "", "sleep": pending_sleep})
    return turns


def _script_start(messages: list[dict[str, Any]]) -> tuple[str, int]:
    """The latest prompt (a user message that is not tool results) and its index."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m["role"] != "user":
            continue
        content = m["content"]
        if isinstance(content, str):
            return content, i
        # A prompt may share its message with tool results: a fork's or an interrupting
        # run's new prompt follows the results of the turn it continues from.
        texts = [b.get("text", "") for b in content if b.get("type") == "text"]
        prompts = [t for t in texts if not t.startswith(NOTE_PREFIX)]
        if prompts:
            return "\n".join(prompts), i
    return "", 0


def _estimate_tokens(obj: Any) -> int:
    return max(1, len(json.dumps(obj)) // 4)


class ScriptedModel:
    def __init__(self, *, chunk_size: int | None = None) -> None:
        # By default a text arrives in about three deltas, like a short streamed answer.
        self.chunk_size = chunk_size

    async def stream(self, request: ModelRequest, on_text: TextSink) -> ModelResponse:
        prompt, start = _script_start(request.messages)
        turn_index = sum(1 for m in request.messages[start:] if m["role"] == "assistant")
        try:
            steps = parse_script(prompt)
        except ScriptError as exc:
            raise ModelError(f"bad script: {exc}", retryable=False) from exc
        if steps is None:
            step = self._default_turn(request.messages[start:], turn_index)
        else:
            turns = _turns(steps)
            if turn_index >= len(turns):
                step = {"text": "", "sleep": 0}
            else:
                step = turns[turn_index]
        if step.get("sleep"):
            await asyncio.sleep(float(step["sleep"]))
        if "fail" in step:
            raise ModelError(str(step["fail"]), retryable=False)
        content: list[dict[str, Any]] = []
        call_id = f"toolu_scripted_{start}_{turn_index + 1}"
        if "text" in step:
            text = str(step["text"])
            size = self.chunk_size or max(8, -(-len(text) // 3))
            for i in range(0, len(text), size):
                await on_text(text[i : i + size])
            content.append({"type": "text", "text": text})
        elif "ask" in step:
            content.append(
                {
                    "type": "tool_use",
                    "id": call_id,
                    "name": "ask_user",
                    "input": {"question": str(step["ask"])},
                }
            )
        else:
            content.append(
                {
                    "type": "tool_use",
                    "id": call_id,
                    "name": step["tool"],
                    "input": step.get("input", {}),
                }
            )
        u = step.get("usage", {})
        usage = TurnUsage(
            input_tokens=u.get("inputTokens", _estimate_tokens(request.messages)),
            output_tokens=u.get("outputTokens", _estimate_tokens(content)),
            cache_read_tokens=u.get("cacheReadTokens", 0),
            cache_write_tokens=u.get("cacheWriteTokens", 0),
        )
        stop = "tool_use" if content[-1]["type"] == "tool_use" else "end_turn"
        return ModelResponse(content=content, stop_reason=stop, usage=usage)

    @staticmethod
    def _default_turn(messages: list[dict[str, Any]], turn_index: int) -> dict[str, Any]:
        results = [
            b.get("content", "")
            for m in messages
            if m["role"] == "user" and isinstance(m["content"], list)
            for b in m["content"]
            if b.get("type") == "tool_result"
        ]
        if turn_index == 0:
            return {"tool": "list_files", "input": {"path": "."}}
        files = (
            [f for f in str(results[0]).splitlines() if f and f != "(no files)"] if results else []
        )
        readme = next((f for f in files if f.lower().startswith("readme")), None)
        if turn_index == 1 and readme:
            return {"tool": "read_file", "input": {"path": readme}}
        summary = f"The workspace has {len(files)} file{'s' if len(files) != 1 else ''}."
        if readme and len(results) > 1:
            first = next(
                (ln.strip("# ").strip() for ln in str(results[1]).splitlines() if ln.strip()), ""
            )
            summary += f" {readme} begins: {first}" if first else f" {readme} is empty."
        elif not files:
            summary = "The workspace is empty."
        return {"text": summary}
