"""Runyard's runs and transcripts as LangGraph sees them: pure functions, no store.

- A run's status maps onto LangGraph's run statuses (``run_status``), a thread's latest
  run onto the thread's status (``thread_status``).
- A thread's state is one graph, ``agent``: ``__start__ → agent ⇄ tools → __end__``. Its
  ``values`` are ``{"messages": [...]}``, LangChain messages: the run's prompt is a
  ``human`` message, each model turn an ``ai`` message (its tool calls as
  ``tool_calls``), each tool result a ``tool`` message, a message sent to a busy run a
  ``human`` one.
- Checkpoints are derived from the transcript: each run has step 0 (its prompt) and one
  step per transcript message after it, and ``<run id>.<step>`` is that step's
  checkpoint id. Transcript messages are only ever appended, so an id names the same
  state forever. Where a turn changed the run's files, Runyard took a checkpoint at its
  boundary (``runyard.checkpoints``): the step that ends that turn is that checkpoint,
  and its id is the ``ckp_…`` id (``with_checkpoints``).
- A question (``ask_user``) is an ``__interrupt__`` in the HumanInterrupt shape of
  ``langgraph.prebuilt.interrupt``; ``command.resume`` answers it (``answer_of``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from runyard.domain import FailReason, RunStatus
from runyard.errors import InvalidInput, NotServed
from runyard.store.transcript import NOTE_PREFIX

GRAPH_ID = "agent"
ASK_USER = "ask_user"

_RUN_STATUS = {
    RunStatus.QUEUED: "pending",
    RunStatus.PENDING: "pending",
    RunStatus.RUNNING: "running",
    RunStatus.WAITING_FOR_INPUT: "interrupted",
    RunStatus.COMPLETED: "success",
    RunStatus.FAILED: "error",
    RunStatus.CANCELLED: "interrupted",
}


def run_status(status: str, fail_reason: str | None = None) -> str:
    """LangGraph's status of a run: a run failed by its deadline is ``timeout``."""
    if status == RunStatus.FAILED and fail_reason == FailReason.TIMEOUT:
        return "timeout"
    return _RUN_STATUS[RunStatus(status)]


def runyard_statuses(lg_status: str) -> set[str] | None:
    """The Runyard statuses a LangGraph run-status filter selects (None: any)."""
    found = {s.value for s in RunStatus if _RUN_STATUS[s] == lg_status}
    if lg_status == "timeout":
        found = {RunStatus.FAILED.value}
    return found or None


def thread_status(latest: str | None) -> str:
    """``idle`` (no run, or the last one completed or was cancelled), ``busy``,
    ``interrupted`` (a question waits) or ``error`` (the last run failed)."""
    if latest is None:
        return "idle"
    if latest == RunStatus.WAITING_FOR_INPUT:
        return "interrupted"
    if latest in (RunStatus.QUEUED, RunStatus.PENDING, RunStatus.RUNNING):
        return "busy"
    return "error" if latest == RunStatus.FAILED else "idle"


def stamp(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=dt.tzinfo or UTC).isoformat()


# -- messages ------------------------------------------------------------------------


def _message(kind: str, msg_id: str, content: Any, **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "content": content,
        "id": msg_id,
        "name": None,
        "additional_kwargs": {},
        "response_metadata": {},
        **extra,
    }


def human_message(msg_id: str, text: str) -> dict[str, Any]:
    return _message("human", msg_id, text, example=False)


def ai_message(msg_id: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
    calls = [
        {
            "name": b.get("name"),
            "args": b.get("input") or {},
            "id": b.get("id"),
            "type": "tool_call",
        }
        for b in blocks
        if b.get("type") == "tool_use"
    ]
    return _message(
        "ai", msg_id, text, example=False, tool_calls=calls, invalid_tool_calls=[],
        usage_metadata=None,
    )  # fmt: skip


def ai_chunk(msg_id: str, text: str) -> dict[str, Any]:
    """A streamed piece of an ``ai`` message (``messages`` stream mode)."""
    return _message(
        "AIMessageChunk", msg_id, text, example=False, tool_calls=[], invalid_tool_calls=[],
        tool_call_chunks=[], usage_metadata=None,
    )  # fmt: skip


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return "" if content is None else str(content)


def assistant_message_id(run_id: str, turn: int) -> str:
    """The id of turn ``turn``'s message: the ``messageId`` of its events too."""
    return f"msg_{run_id.removeprefix('run_')}_{turn}"


@dataclass(frozen=True)
class Step:
    """One checkpoint of a thread: a run's prompt (index 0) or one transcript message."""

    run_id: str
    index: int
    node: str  # the graph node that wrote it: "__input__", "agent" or "tools"
    message: dict[str, Any]
    created_at: datetime | None
    key: str | None = None  # the transcript message's key (None for the prompt)
    ckp: str | None = None  # the Runyard checkpoint taken at this step (ckp_…), if one was

    @property
    def checkpoint_id(self) -> str:
        return self.ckp or checkpoint_id(self.run_id, self.index)

    @property
    def pending_calls(self) -> list[dict[str, Any]]:
        return list(self.message.get("tool_calls") or [])


def checkpoint_id(run_id: str, index: int) -> str:
    return f"{run_id}.{index}"


def parse_checkpoint_id(value: str) -> tuple[str, int] | None:
    run_id, _, index = value.rpartition(".")
    if not run_id.startswith("run_") or not index.isdecimal():
        return None
    return run_id, int(index)


def run_steps(
    run_id: str,
    prompt: str,
    created_at: datetime | None,
    rows: list[tuple[str, str, list[dict[str, Any]], datetime | None]],
) -> list[Step]:
    """A run's steps: its prompt, then each transcript row ``(key, role, content,
    created_at)`` in the order it was written."""
    steps = [Step(run_id, 0, "__input__", human_message(f"{run_id}-prompt", prompt), created_at)]
    names: dict[str, str] = {}
    for key, role, content, at in rows:
        index = len(steps)
        if role == "assistant":
            turn = int(key.removeprefix("turn").split(".", 1)[0])
            msg = ai_message(assistant_message_id(run_id, turn), content)
            names.update({c["id"]: c["name"] for c in msg["tool_calls"]})
            steps.append(Step(run_id, index, "agent", msg, at, key))
        elif role == "tool_result":
            block = content[0] if content else {}
            call_id = str(block.get("tool_use_id", ""))
            msg = _message(
                "tool", f"{run_id}-{key}", _text(block.get("content")), tool_call_id=call_id,
                status="error" if block.get("is_error") else "success", artifact=None,
            )  # fmt: skip
            msg["name"] = names.get(call_id)
            steps.append(Step(run_id, index, "tools", msg, at, key))
        else:  # a message the user sent to the busy run
            text = _text(content).removeprefix(NOTE_PREFIX)
            steps.append(
                Step(run_id, index, "__input__", human_message(f"{run_id}-{key}", text), at, key)
            )
    return steps


_TURN = re.compile(r"^turn(\d+)\.")


def with_checkpoints(steps: list[Step], taken: dict[tuple[str, int], str]) -> list[Step]:
    """``steps``, the last step of each turn that has a Runyard checkpoint (``taken``:
    ``(run id, turn) → ckp id``, the turns that changed files) named by that checkpoint."""
    last: dict[tuple[str, int], int] = {}
    for i, step in enumerate(steps):
        found = _TURN.match(step.key or "")
        if found:
            last[(step.run_id, int(found.group(1)))] = i
    out = list(steps)
    for turn, i in last.items():
        if turn in taken:
            out[i] = replace(out[i], ckp=taken[turn])
    return out


def next_nodes(step: Step, answered: set[str]) -> list[str]:
    """The node that runs after ``step``: ``tools`` after a turn with unanswered calls,
    ``agent`` after an input or a result, none after a final answer."""
    if step.node == "agent":
        open_calls = [c for c in step.pending_calls if c["id"] not in answered]
        return ["tools"] if open_calls else []
    return ["agent"]


# -- interrupts ----------------------------------------------------------------------


def ask_interrupt(call_id: str, question: str) -> dict[str, Any]:
    """A question as LangGraph's interrupt of a HumanInterrupt: the agent-inbox shape."""
    return {
        "id": call_id,
        "value": {
            "action_request": {"action": ASK_USER, "args": {"question": question}},
            "config": {
                "allow_ignore": False,
                "allow_respond": True,
                "allow_edit": False,
                "allow_accept": False,
            },
            "description": question,
        },
    }


def answer_of(resume: Any, interrupt_ids: list[str]) -> str:
    """The answer that ``command.resume`` gives a question: a string, a HumanResponse
    ``{"type": "response", "args": "…"}`` (or a list of one), or ``{interrupt id: …}``."""
    if isinstance(resume, dict) and resume and set(resume) <= set(interrupt_ids):
        if len(resume) != 1:
            raise InvalidInput("answer one interrupt at a time", field="command.resume")
        return answer_of(next(iter(resume.values())), interrupt_ids)
    if isinstance(resume, list) and len(resume) == 1:
        resume = resume[0]
    if isinstance(resume, str):
        return resume
    if isinstance(resume, dict) and "type" in resume:
        if resume["type"] == "response" and isinstance(resume.get("args"), str):
            return str(resume["args"])
        if resume["type"] in ("accept", "edit", "ignore"):
            raise InvalidInput(
                f"a question only takes a 'response'; '{resume['type']}' decides an approval",
                field="command.resume",
            )
    raise InvalidInput(
        "must be the answer: a string, or {'type': 'response', 'args': '<answer>'}",
        field="command.resume",
    )


# -- input ---------------------------------------------------------------------------

_HUMAN = {"human", "user"}


def prompt_of(input_: dict[str, Any]) -> str:
    """The prompt of a run's ``input``: its one (last) human message's text."""
    unknown = sorted(set(input_) - {"messages"})
    if unknown:
        raise InvalidInput(
            f"unknown state key(s) {', '.join(unknown)}; the state has 'messages' only",
            field="input",
            kind="extra_forbidden",
        )
    messages = input_.get("messages")
    if isinstance(messages, dict | str):
        messages = [messages]
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("needs a list of messages", field="input.messages")
    last = messages[-1]
    if isinstance(last, str):
        last = {"type": "human", "content": last}
    if not isinstance(last, dict) or (last.get("type") or last.get("role")) not in _HUMAN:
        raise InvalidInput("the last message must be a human message", field="input.messages")
    if len(messages) > 1:
        raise NotServed(
            "only one new human message is served as a run's input: the thread carries "
            "the conversation (earlier messages, system messages and tool messages are not)"
        )
    content = last.get("content")
    if isinstance(content, list):
        kinds = {b.get("type") for b in content if isinstance(b, dict)}
        if not content or kinds - {"text"} or len(kinds) != 1:
            raise NotServed("only text content is served in a human message")
    text = _text(content)
    if not text.strip():
        raise InvalidInput("the human message has no text", field="input.messages")
    return text
