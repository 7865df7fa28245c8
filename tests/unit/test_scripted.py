from __future__ import annotations

import json

import pytest

from runyard.llm.base import ModelError, ModelRequest
from runyard.llm.scripted import ScriptedModel, ScriptError, parse_script


def req(messages: list[dict[str, object]]) -> ModelRequest:
    return ModelRequest(model="scripted", system="s", messages=messages, tools=[])


def prompt(*lines: object) -> str:
    return "#!scripted\n" + "\n".join(json.dumps(x) for x in lines)


def test_parse_rejects_bad_lines() -> None:
    assert parse_script("hello") is None
    for bad, msg in [
        ("{x", "not JSON"),
        ("[1]", "JSON object"),
        ('{"tool": "a", "text": "b"}', "one of"),
        ("{}", "needs one of"),
        ('{"sleep": -1}', "sleep"),
        ('{"sleep": NaN}', "sleep"),  # issue 23, item 14: asyncio.sleep(nan) raised
        ('{"sleep": Infinity}', "sleep"),
        ('{"tool": 3}', "tool must"),
        ('{"text": "a", "usage": {"inputTokens": -1}}', "usage"),
    ]:
        with pytest.raises(ScriptError, match=msg):
            parse_script(f"#!scripted\n{bad}")


async def test_turns_follow_the_script() -> None:
    m = ScriptedModel(chunk_size=2)
    p = prompt(
        {"tool": "bash", "input": {"command": "ls"}},
        {"ask": "why?"},
        {"text": "done", "usage": {"inputTokens": 7}},
    )
    msgs: list[dict[str, object]] = [{"role": "user", "content": p}]
    seen: list[str] = []

    async def sink(t: str) -> None:
        seen.append(t)

    r1 = await m.stream(req(msgs), sink)
    assert r1.tool_uses[0]["name"] == "bash" and r1.stop_reason == "tool_use"
    msgs += [
        {"role": "assistant", "content": r1.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "ok"}]},
    ]
    r2 = await m.stream(req(msgs), sink)
    assert r2.tool_uses[0] == {
        "type": "tool_use",
        "id": r2.tool_uses[0]["id"],
        "name": "ask_user",
        "input": {"question": "why?"},
    }
    assert r2.tool_uses[0]["id"] != r1.tool_uses[0]["id"]
    msgs += [
        {"role": "assistant", "content": r2.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "y", "content": "because"}],
        },
    ]
    r3 = await m.stream(req(msgs), sink)
    assert r3.text == "done" and r3.stop_reason == "end_turn" and r3.usage.input_tokens == 7
    assert seen == ["do", "ne"]


async def test_fail_and_sleep() -> None:
    m = ScriptedModel()

    async def sink(t: str) -> None:
        pass

    with pytest.raises(ModelError) as err:
        await m.stream(req([{"role": "user", "content": prompt({"fail": "boom"})}]), sink)
    assert not err.value.should_retry and "boom" in str(err.value)
    r = await m.stream(
        req([{"role": "user", "content": prompt({"sleep": 0.01}, {"text": "after"})}]), sink
    )
    assert r.text == "after"


async def test_default_behaviour_without_script() -> None:
    m = ScriptedModel()

    async def sink(t: str) -> None:
        pass

    msgs: list[dict[str, object]] = [{"role": "user", "content": "what is here?"}]
    r1 = await m.stream(req(msgs), sink)
    assert r1.tool_uses[0]["name"] == "list_files"
    msgs += [
        {"role": "assistant", "content": r1.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "a", "content": "README.md\nx.py"}],
        },
    ]
    r2 = await m.stream(req(msgs), sink)
    assert r2.tool_uses[0]["input"] == {"path": "README.md"}
    msgs += [
        {"role": "assistant", "content": r2.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "b", "content": "# Title\nbody"}],
        },
    ]
    r3 = await m.stream(req(msgs), sink)
    assert r3.text == "The workspace has 2 files. README.md begins: Title"


async def test_a_new_prompt_beside_tool_results_starts_its_own_script() -> None:
    """A fork's or an interrupting run's prompt shares its message with the results of
    the turn it continues from: that prompt is the script now, not the older one."""
    old = prompt({"tool": "bash", "input": {"command": "true"}}, {"text": "old script"})
    messages: list[dict[str, object]] = [
        {"role": "user", "content": old},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "bash", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "not run"},
                {"type": "text", "text": prompt({"text": "new script"})},
            ],
        },
    ]
    got = await ScriptedModel().stream(req(messages), _ignore)
    assert got.content == [{"type": "text", "text": "new script"}]


async def _ignore(_: str) -> None:
    return None
