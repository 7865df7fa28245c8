"""The LangGraph mapping (api/langgraph): statuses, messages, checkpoints, interrupts, and
what a run body may ask (422 for what LangGraph does not know, 501 for what Runyard does
not serve)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from api.errors import ProblemError
from api.langgraph.bodies import HistoryBody, RunAsk, RunBody, modes_of, parse
from api.langgraph.hooks import Baseline
from api.langgraph.mapping import (
    answer_of,
    ask_interrupt,
    next_nodes,
    parse_checkpoint_id,
    prompt_of,
    run_status,
    run_steps,
    runyard_statuses,
    thread_status,
)
from api.langgraph.stream import RunStream, _row_key, frame, settled
from api.langgraph.threads import _history_page
from api.langgraph.views import History, thread_object
from runyard.db.tables import Run, Thread
from runyard.errors import InvalidInput, NotServed

AT = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "reason", "lg"),
    [
        ("queued", None, "pending"),
        ("pending", None, "pending"),
        ("running", None, "running"),
        ("waiting_for_input", None, "interrupted"),
        ("completed", None, "success"),
        ("failed", "error", "error"),
        ("failed", "max_turns", "error"),
        ("failed", "timeout", "timeout"),
        ("cancelled", None, "interrupted"),
    ],
)
def test_run_statuses_map_as_the_issue_says(status: str, reason: str | None, lg: str) -> None:
    assert run_status(status, reason) == lg


def test_status_filters_and_thread_status() -> None:
    assert runyard_statuses("interrupted") == {"waiting_for_input", "cancelled"}
    assert runyard_statuses("timeout") == {"failed"}
    assert runyard_statuses("nonsense") is None
    assert thread_status(None) == "idle"
    assert thread_status("running") == "busy"
    assert thread_status("waiting_for_input") == "interrupted"
    assert thread_status("failed") == "error"
    assert thread_status("completed") == "idle"


ROWS: list[tuple[str, str, list[dict[str, Any]], datetime | None]] = [
    (
        "turn1.assistant",
        "assistant",
        [
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "call_1", "name": "bash", "input": {"command": "ls"}},
        ],
        AT,
    ),
    (
        "turn1.result.call_1",
        "tool_result",
        [{"type": "tool_result", "tool_use_id": "call_1", "content": "a.py", "is_error": True}],
        AT,
    ),
    ("note.k", "user", [{"type": "text", "text": "Message from the user: hurry"}], AT),
    ("turn2.assistant", "assistant", [{"type": "text", "text": "Done."}], AT),
]


def test_a_transcript_becomes_langchain_messages_and_steps() -> None:
    steps = run_steps("run_abc", "Fix it", AT, ROWS)
    msgs = [s.message for s in steps]
    assert [m["type"] for m in msgs] == ["human", "ai", "tool", "human", "ai"]
    assert msgs[0]["content"] == "Fix it"
    assert msgs[1]["content"] == "Looking."
    assert msgs[1]["tool_calls"] == [
        {"name": "bash", "args": {"command": "ls"}, "id": "call_1", "type": "tool_call"}
    ]
    assert msgs[1]["id"] == "msg_abc_1"  # the messageId of the turn's events
    assert msgs[2]["tool_call_id"] == "call_1" and msgs[2]["name"] == "bash"
    assert msgs[2]["status"] == "error" and msgs[2]["content"] == "a.py"
    assert msgs[3]["content"] == "hurry"
    assert [s.checkpoint_id for s in steps] == [f"run_abc.{i}" for i in range(5)]
    assert [s.node for s in steps] == ["__input__", "agent", "tools", "__input__", "agent"]
    assert next_nodes(steps[1], set()) == ["tools"]
    assert next_nodes(steps[1], {"call_1"}) == []
    assert next_nodes(steps[2], {"call_1"}) == ["agent"]
    assert next_nodes(steps[4], {"call_1"}) == []


def test_checkpoint_ids_round_trip() -> None:
    assert parse_checkpoint_id("run_abc.3") == ("run_abc", 3)
    assert parse_checkpoint_id("1ef-uuid") is None
    assert parse_checkpoint_id("run_abc.x") is None


def test_a_question_is_a_human_interrupt_and_resume_answers_it() -> None:
    interrupt = ask_interrupt("call_9", "Which colour?")
    assert interrupt["id"] == "call_9"
    value = interrupt["value"]
    assert value["action_request"] == {"action": "ask_user", "args": {"question": "Which colour?"}}
    assert value["config"]["allow_respond"] is True and value["config"]["allow_accept"] is False
    ids = ["call_9"]
    assert answer_of("teal", ids) == "teal"
    assert answer_of({"type": "response", "args": "teal"}, ids) == "teal"
    assert answer_of([{"type": "response", "args": "teal"}], ids) == "teal"
    assert answer_of({"call_9": "teal"}, ids) == "teal"
    with pytest.raises(InvalidInput):  # accept decides an approval, not a question
        answer_of({"type": "accept", "args": None}, ids)
    with pytest.raises(InvalidInput):
        answer_of(42, ids)


def test_the_hook_finds_the_pending_question() -> None:
    rows: list[tuple[str, str, list[dict[str, Any]], datetime | None]] = [
        (
            "turn1.assistant",
            "assistant",
            [{"type": "tool_use", "id": "c1", "name": "ask_user", "input": {"question": "Q?"}}],
            AT,
        )
    ]
    last = run_steps("run_x", "p", AT, rows)[-1]
    ext = Baseline()
    assert ext.interrupts("waiting_for_input", last, set())[0]["id"] == "c1"
    assert ext.interrupts("running", last, set()) == []
    assert ext.interrupts("waiting_for_input", last, {"c1"}) == []
    ext.check_start(None, "run_x.1")
    ext.check_start("run_x.1", "run_x.1")
    with pytest.raises(NotServed):
        ext.check_start("run_x.0", "run_x.1")
    ext.check_multitask("reject")
    with pytest.raises(NotServed):
        ext.check_multitask("interrupt")


def test_the_prompt_is_the_last_human_message() -> None:
    assert prompt_of({"messages": [{"role": "user", "content": "hi"}]}) == "hi"
    assert (
        prompt_of({"messages": [{"type": "human", "content": [{"type": "text", "text": "a"}]}]})
        == "a"
    )
    assert prompt_of({"messages": "hi"}) == "hi"
    with pytest.raises(InvalidInput):
        prompt_of({"messages": [], "other": 1})
    with pytest.raises(InvalidInput):
        prompt_of({"messages": [{"role": "assistant", "content": "x"}]})
    with pytest.raises(NotServed):
        prompt_of(
            {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "x"}]}
        )
    with pytest.raises(NotServed):
        prompt_of(
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "u"}]}]}
        )


def _ask(**body: Any) -> RunAsk:
    return RunAsk.of(RunBody.model_validate({"assistant_id": "default", **body}), stateless=False)


def test_config_and_context_carry_the_run_fields() -> None:
    ask = _ask(
        input={"messages": [{"role": "user", "content": "go"}]},
        config={"configurable": {"model": "scripted", "maxTurns": 5}, "tags": []},
        context={"repo": "o/r", "model": "scripted"},
    )
    assert ask.prompt == "go"
    assert ask.fields == {"model": "scripted", "max_turns": 5, "repo": "o/r"}
    with pytest.raises(InvalidInput):  # unknown: 422, never dropped
        _ask(input={"messages": ["x"]}, config={"configurable": {"thread_ts": 1}})
    with pytest.raises(InvalidInput):
        _ask(input={"messages": ["x"]}, config={"callbacks": []})
    with pytest.raises(InvalidInput):  # the two disagree
        _ask(
            input={"messages": ["x"]},
            config={"configurable": {"model": "a"}},
            context={"model": "b"},
        )
    with pytest.raises(NotServed):
        _ask(input={"messages": ["x"]}, config={"recursion_limit": 5})


@pytest.mark.parametrize(
    "extra",
    [
        {"interrupt_before": ["agent"]},
        {"webhook": "https://x.example"},
        {"after_seconds": 5},
        {"stream_mode": ["debug"]},
        {"command": {"goto": "agent"}},
        {"feedback_keys": ["k"]},
    ],
)
def test_known_but_unserved_fields_are_501(extra: dict[str, Any]) -> None:
    body = {"input": {"messages": ["x"]}, **extra}
    if "command" in extra:
        body.pop("input")
    with pytest.raises(NotServed):
        _ask(**body)


def test_unknown_fields_and_values_are_422() -> None:
    with pytest.raises(ProblemError) as exc:
        parse(RunBody, b'{"assistant_id": "a", "input": {}, "surprise": 1}')
    assert exc.value.status == 422 and exc.value.extra["errors"][0]["field"] == "surprise"
    with pytest.raises(ProblemError):
        parse(RunBody, b'{"assistant_id": "a", "multitask_strategy": "sometimes"}')
    with pytest.raises(ProblemError):
        parse(RunBody, b"not json")
    with pytest.raises(InvalidInput):
        modes_of(["values", "nonsense"])
    assert modes_of(None) == ["values"] and modes_of("updates") == ["updates"]


def test_resume_and_input_together_and_missing() -> None:
    ask = _ask(command={"resume": "teal"}, input={})  # agent-chat-ui sends {} with a resume
    assert ask.resuming and ask.resume == "teal" and ask.prompt is None
    with pytest.raises(InvalidInput):
        _ask(command={"resume": "x"}, input={"messages": ["y"]})
    with pytest.raises(InvalidInput):
        _ask()
    with pytest.raises(InvalidInput):
        RunAsk.of(
            RunBody.model_validate({"assistant_id": "a", "command": {"resume": "x"}}),
            stateless=True,
        )


def test_sse_frames_and_waiters() -> None:
    assert frame("end", None) == b"event: end\ndata: null\n\n"
    assert frame("metadata", {"run_id": "r", "attempt": 1}, 7).endswith(b"id: 7\n\n")
    assert _row_key("turn3.completed") == "turn3.assistant"
    assert _row_key("turn3.result.c1") == "turn3.result.c1"
    run = Run(
        id="run_a",
        org_id="o",
        status="waiting_for_input",
        prompt="p",
        model="m",
        workflow_id="run_a",
    )
    assert settled(run, asked=5, since=0)
    assert not settled(run, asked=5, since=6)  # the question it answered, not a new one
    run.status = "running"
    assert not settled(run, asked=5, since=0)
    run.status = "completed"
    assert settled(run, asked=0, since=0) and settled(None, 0, 0)


def _history(
    status: str, rows: list[tuple[str, str, list[dict[str, Any]], datetime | None]]
) -> History:
    run = Run(
        id="run_h", org_id="o", status=status, prompt="p", model="scripted", workflow_id="run_h",
        template="default", created_at=AT, updated_at=AT,
        error={"code": "MODEL_ERROR", "message": "boom"} if status == "failed" else None,
    )  # fmt: skip
    return History("thr_1", {run.id: run}, run_steps(run.id, run.prompt, AT, rows), Baseline())


ASKED: list[tuple[str, str, list[dict[str, Any]], datetime | None]] = [
    (
        "turn1.assistant",
        "assistant",
        [{"type": "tool_use", "id": "c1", "name": "ask_user", "input": {"question": "Q?"}}],
        AT,
    )
]


def test_thread_states_next_tasks_interrupts_and_parents() -> None:
    waiting = _history("waiting_for_input", ASKED)
    head = waiting.head_state()
    assert head["next"] == ["tools"] and head["interrupts"][0]["id"] == "c1"
    assert (
        head["tasks"][0]["name"] == "tools" and head["tasks"][0]["interrupts"] == head["interrupts"]
    )
    assert head["checkpoint"]["checkpoint_id"] == "run_h.1"
    assert head["parent_checkpoint"]["checkpoint_id"] == "run_h.0"
    assert waiting.state(0)["parent_checkpoint"] is None
    assert waiting.state(0)["metadata"]["source"] == "input"
    assert (
        thread_object(Thread(id="thr_1", org_id="o", created_at=AT, updated_at=AT), waiting)[
            "status"
        ]
        == "interrupted"
    )
    done = _history("completed", ROWS)
    assert done.head_state()["next"] == [] and done.pending() == []
    assert len(done.values()["messages"]) == 5 and len(done.values(1)["messages"]) == 2
    failed = _history("failed", ROWS[:1])
    assert failed.head_state()["tasks"][0]["error"] == "boom"
    empty = History("thr_2", {}, [], Baseline())
    assert empty.head_state()["values"] == {} and empty.head is None


def test_the_legacy_messages_mode_accumulates_a_message() -> None:
    run = Run(id="run_s", org_id="o", status="running", prompt="p", model="m", workflow_id="run_s")
    stream = RunStream(
        cast(Any, None), run, ["messages", "messages-tuple"], Baseline(), 0, initial=True
    )
    first = b"".join(stream._delta("msg_s_1", "Hel"))
    second = b"".join(stream._delta("msg_s_1", "lo"))
    assert b"event: messages/metadata" in first and b"event: messages/metadata" not in second
    assert b'"content":"Hello"' in second  # the partial message so far
    assert b'"type":"AIMessageChunk"' in second and b'"content":"lo"' in second


def test_history_pages_newest_first_before_a_checkpoint() -> None:
    done = _history("completed", ROWS)  # steps run_h.0 … run_h.4
    ids = [s["checkpoint"]["checkpoint_id"] for s in _history_page(done, HistoryBody(limit=10))]
    assert ids == [f"run_h.{i}" for i in (4, 3, 2, 1, 0)]
    page = _history_page(done, HistoryBody(limit=2, before="run_h.3"))
    assert [s["checkpoint"]["checkpoint_id"] for s in page] == ["run_h.2", "run_h.1"]
    config = {"configurable": {"checkpoint_id": "run_h.1"}}  # the JS client's "before"
    assert len(_history_page(done, HistoryBody(before=config))) == 1
    at = _history_page(done, HistoryBody(checkpoint={"checkpoint_id": "run_h.1"}))
    assert at[0]["checkpoint"]["checkpoint_id"] == "run_h.1"
    only = _history_page(done, HistoryBody(metadata={"source": "input"}, select=["checkpoint"]))
    assert [s["checkpoint"]["checkpoint_id"] for s in only] == ["run_h.3", "run_h.0"]
    assert set(only[0]) == {"checkpoint"}
    with pytest.raises(ProblemError):
        _history_page(done, HistoryBody(before="run_zzz.1"))
