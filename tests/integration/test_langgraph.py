"""The /lg routes against the real stack, driven by the pinned ``langgraph-sdk`` client
with only its URL and key set (issue 29): threads, stream, wait, join, cancel, an
interrupt answered by command.resume, history and search, on the scripted model; an
approval as an interrupt decided by HumanResponses; multitask_strategy enqueue and
interrupt."""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import (
    ConflictError,
    InternalServerError,
    NotFoundError,
    UnprocessableEntityError,
)

from tests.conftest import Keys, poll_until, script
from tests.stack import Stack

ORIGIN = "http://ui.example"
SCRIPTED = {"configurable": {"model": "scripted"}}


@pytest.fixture(scope="module")
def lg_stack(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A second API process with the LangGraph routes on, sharing the stack's store and
    worker (the session's API keeps them off)."""
    s = Stack(
        {**stack.env, "RUNYARD_LANGGRAPH_COMPAT": "on", "RUNYARD_LANGGRAPH_CORS_ORIGINS": ORIGIN},
        tmp_path_factory.mktemp("lg-logs"),  # not in the data dir, which stays private
    )
    s.start_api()
    yield s
    # Only the API process: Stack.stop() would also release the shared data dir's
    # sandboxes, which the session's worker still runs.
    assert s.api is not None
    os.killpg(s.api.pid, signal.SIGTERM)
    s.api.wait(10)


@pytest.fixture
async def key(keys: Keys) -> str:
    return await keys.make("org-lg-" + secrets.token_hex(4))


@pytest.fixture
async def lg(lg_stack: Stack, key: str) -> AsyncIterator[LangGraphClient]:
    client = get_client(url=f"{lg_stack.api_url}/lg", api_key=key)
    yield client
    await client.aclose()


def says(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": script({"text": text})}]}


async def test_meta_auth_cors_and_what_is_not_served(
    lg_stack: Stack, stack: Stack, key: str, lg: Any, keys: Keys
) -> None:
    async with httpx.AsyncClient(base_url=lg_stack.api_url, timeout=10) as http:
        info = (await http.get("/lg/info")).json()
        assert info["flags"]["assistants"] is True and info["flags"]["crons"] is False
        flags = info["flags"]
        assert flags["approvals"] and flags["multitask_strategies"] and not flags["checkpoint_fork"]
        assert (await http.get("/lg/ok")).json() == {"ok": True}
        assert (await http.post("/lg/threads", json={})).status_code == 401
        # X-Api-Key is /lg's alone.
        assert (await http.get("/v1/runs", headers={"X-Api-Key": key})).status_code == 401
        pre = await http.options(
            "/lg/threads",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "x-api-key,content-type"},
        )  # fmt: skip
        assert pre.headers["access-control-allow-origin"] == ORIGIN
        other = await http.get("/lg/ok", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        refused = await http.options(
            "/lg/threads",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert refused.status_code == 400 and refused.json()["type"] == "BAD_REQUEST"
        typo = await http.get("/lg/threads/thr_x/history?limt=3", headers={"X-Api-Key": key})
        assert typo.status_code == 422 and typo.json()["errors"][0]["field"] == "limt"
        crons = await http.post("/lg/runs/crons", json={}, headers={"X-Api-Key": key})
        assert crons.status_code == 501 and crons.json()["type"] == "NOT_IMPLEMENTED"
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=10) as http:
        assert (await http.get("/lg/ok")).status_code == 404  # off unless turned on
    found = await lg.assistants.search()
    assert "default" in {a["assistant_id"] for a in found}
    assistant = await lg.assistants.get("agent")
    assert assistant["assistant_id"] == "default" and assistant["graph_id"] == "agent"
    assert "messages" in (await lg.assistants.get_schemas("default"))["input_schema"]["properties"]
    assert {n["id"] for n in (await lg.assistants.get_graph("default"))["nodes"]} >= {
        "agent",
        "tools",
    }
    assert await lg.assistants.get_subgraphs("default") == {}
    thread = await lg.threads.create(metadata={"a": 1})
    patched = await lg.threads.update(thread["thread_id"], metadata={"b": 2})
    assert patched["metadata"] == {"a": 1, "b": 2} and patched["status"] == "idle"
    # Metadata is bounded as on /v1/threads (16 KiB), also what patches merge into.
    half = "x" * 9000
    with pytest.raises(UnprocessableEntityError):
        await lg.threads.create(metadata={"a": half * 2})
    await lg.threads.update(thread["thread_id"], metadata={"c": half})
    with pytest.raises(UnprocessableEntityError):
        await lg.threads.update(thread["thread_id"], metadata={"d": half})
    await lg.threads.update(thread["thread_id"], metadata={"c": None})
    # Another organization's thread is answered as a missing one.
    stranger: Any = get_client(url=f"{lg_stack.api_url}/lg", api_key=await keys.make("org-lg-b"))
    async with stranger:
        with pytest.raises(NotFoundError):
            await stranger.threads.get(thread["thread_id"])
        with pytest.raises(NotFoundError):
            await stranger.runs.create(thread["thread_id"], "default", input=says("x"))
    gone = await lg.threads.create()
    await lg.threads.delete(gone["thread_id"])
    with pytest.raises(NotFoundError):
        await lg.threads.get(gone["thread_id"])
    with pytest.raises(UnprocessableEntityError):
        await lg.runs.create(thread["thread_id"], "default", input=says("x"), config={"bogus": 1})
    with pytest.raises(UnprocessableEntityError):
        await lg.http.post(
            f"/threads/{thread['thread_id']}/runs",
            json={"assistant_id": "default", "input": says("x"), "surprise": True},
        )
    with pytest.raises(InternalServerError) as unserved:  # not the thread's latest
        await lg.runs.create(
            thread["thread_id"], "default", input=says("x"), checkpoint_id="run_x.0"
        )
    assert unserved.value.status_code == 501


async def test_stream_wait_join_history_and_search(lg: Any) -> None:
    marker = secrets.token_hex(4)
    thread = await lg.threads.create(metadata={"marker": marker})
    tid = thread["thread_id"]
    created: list[Any] = []
    parts = [
        p
        async for p in lg.runs.stream(
            tid, "default", input=says("hello there"), config=SCRIPTED,
            stream_mode=["values", "updates", "messages-tuple"], on_run_created=created.append,
        )
    ]  # fmt: skip
    events = [p.event for p in parts]
    assert events[0] == "metadata" and parts[0].data["attempt"] == 1
    run_id = parts[0].data["run_id"]
    assert created[0]["run_id"] == run_id and created[0]["thread_id"] == tid
    # LangGraph's order: metadata, the input's values, the turn's tokens, its update, the
    # values after it, end.
    assert events[1] == "values" and events[-1] == "end"
    first = events.index("messages")
    assert events[first:] == ["messages"] * (events.index("updates") - first) + [
        "updates",
        "values",
        "end",
    ]
    update = next(p.data for p in parts if p.event == "updates")
    assert update["agent"]["messages"][0]["type"] == "ai"
    final = [p.data for p in parts if p.event == "values"][-1]["messages"]
    assert [m["type"] for m in final] == ["human", "ai"] and final[-1]["content"] == "hello there"
    run = await lg.runs.get(tid, run_id)
    assert run["status"] == "success"
    with pytest.raises(httpx.HTTPStatusError) as nothing:  # nothing waits for an answer
        await lg.runs.wait(tid, "default", command={"resume": "teal"})
    assert nothing.value.response.status_code == 409

    state = await lg.threads.get_state(tid)
    assert state["values"]["messages"] == final and state["next"] == []
    # A second run continues the thread; wait answers its final values.
    values = await lg.runs.wait(tid, "default", input=says("again"), config=SCRIPTED)
    assert isinstance(values, dict)
    assert [m["content"] for m in values["messages"]][-1] == "again"
    assert len(values["messages"]) == 4
    joined = await lg.runs.join(tid, run_id)
    assert joined["messages"] == final  # the values that run left
    history = await lg.threads.get_history(tid, limit=10)
    assert (
        len(history) == 4
        and history[0]["checkpoint"] == (await lg.threads.get_state(tid))["checkpoint"]
    )
    older = await lg.threads.get_state(
        tid, checkpoint_id=history[-1]["checkpoint"]["checkpoint_id"]
    )
    assert [m["type"] for m in older["values"]["messages"]] == ["human"]
    found = await lg.threads.search(metadata={"marker": marker, "graph_id": "agent"})
    assert [t["thread_id"] for t in found] == [tid] and found[0]["status"] == "idle"
    assert found[0]["metadata"]["assistant_id"] == "default"
    assert len(await lg.runs.list(tid)) == 2
    # Resume after the last event id: only the end is left.
    rest = [p async for p in lg.runs.join_stream(tid, run_id, last_event_id=str(parts[-2].id))]
    assert [p.event for p in rest][-1] == "end" and "values" not in [p.event for p in rest[1:]]
    url = f"/threads/{tid}/runs/{run_id}/stream"
    async with lg.http.client.stream("GET", url, headers={"Last-Event-ID": str(parts[-1].id)}) as r:
        assert r.headers["location"] == f"{lg.http.client.base_url}{url.lstrip('/')}"
        assert r.headers["content-location"] == f"/lg/threads/{tid}/runs/{run_id}"


async def test_interrupt_resume_cancel_and_stateless(lg: Any) -> None:
    thread = await lg.threads.create()
    tid = thread["thread_id"]
    lines = script({"ask": "Which colour?"}, {"ask": "Which size?"}, {"text": "done"})
    ask = {"messages": [{"role": "user", "content": lines}]}
    parts = [p async for p in lg.runs.stream(tid, "default", input=ask, config=SCRIPTED)]
    last_values = [p.data for p in parts if p.event == "values"][-1]
    interrupt = last_values["__interrupt__"][0]
    assert interrupt["value"]["action_request"]["args"]["question"] == "Which colour?"
    assert parts[-1].event == "end"
    assert (await lg.threads.get(tid))["status"] == "interrupted"
    run_id = parts[0].data["run_id"]
    assert (await lg.runs.get(tid, run_id))["status"] == "interrupted"
    assert (await lg.runs.join(tid, run_id))["__interrupt__"][0]["id"] == interrupt["id"]
    assert (await lg.threads.get_state(tid))["tasks"][0]["interrupts"] == [interrupt]
    with pytest.raises(ConflictError):  # one run at a time: reject
        await lg.runs.create(tid, "default", input=says("x"), config=SCRIPTED)
    with pytest.raises(ConflictError):  # not while a run is open
        await lg.threads.delete(tid)
    # Resumed by a stream: the same run goes on from the answer to the next question.
    again = [
        p
        async for p in lg.runs.stream(
            tid, "default", command={"resume": "teal"}, stream_mode=["values", "updates"]
        )
    ]
    assert again[0].data["run_id"] == run_id
    updates = [p.data for p in again if p.event == "updates"]
    assert updates[0]["tools"]["messages"][0]["content"] == "teal"
    assert updates[-1]["__interrupt__"][0]["value"]["description"] == "Which size?"
    # Resumed by a wait: a HumanResponse answers, and the run ends.
    resumed = await lg.runs.wait(
        tid, "default", command={"resume": [{"type": "response", "args": "large"}]}
    )
    assert isinstance(resumed, dict)
    msgs = resumed["messages"]
    assert [m["content"] for m in msgs if m["type"] == "tool"] == ["teal", "large"]
    assert msgs[-1]["content"] == "done"
    assert (await lg.runs.get(tid, run_id))["status"] == "success"

    sleepy = {"messages": [{"role": "user", "content": script({"sleep": 30}, {"text": "late"})}]}
    slow = await lg.runs.create(tid, "default", input=sleepy, config=SCRIPTED)
    cancelled = await lg.runs.cancel(tid, slow["run_id"])
    assert cancelled["status"] == "interrupted"
    # on_disconnect "cancel": the client that goes away takes its run with it.
    stream = lg.runs.stream(tid, "default", input=sleepy, config=SCRIPTED, on_disconnect="cancel")
    async with aclosing(stream):
        dropped = (await anext(stream)).data["run_id"]

    async def gone() -> bool:
        return bool((await lg.runs.get(tid, dropped))["status"] == "interrupted")

    await poll_until(gone, "the dropped stream's run was cancelled")

    out = await lg.runs.wait(None, "default", input=says("no thread"), config=SCRIPTED)
    assert isinstance(out, dict) and out["messages"][-1]["content"] == "no thread"
    broken = {"messages": [{"role": "user", "content": script({"fail": "the model broke"})}]}
    failed = [p async for p in lg.runs.stream(None, "default", input=broken, config=SCRIPTED)]
    assert [p.event for p in failed][-2:] == ["error", "end"]
    assert failed[-2].data["message"] == "the model broke"


async def test_approval_interrupts_enqueue_and_interrupt(lg: Any) -> None:
    tid = (await lg.threads.create())["thread_id"]
    calls = script(
        {"tool": "bash", "input": {"command": "echo one"}},
        {"tool": "bash", "input": {"command": "echo two"}},
        {"text": "done"},
    )
    config = {"configurable": {"model": "scripted", "approvals": {"default": "ask"}}}
    ask = {"messages": [{"role": "user", "content": calls}]}
    parts = [
        p
        async for p in lg.runs.stream(
            tid, "default", input=ask, config=config, stream_mode=["values", "updates"]
        )
    ]
    assert parts[-1].event == "end"
    (interrupt,) = [p.data for p in parts if p.event == "values"][-1]["__interrupt__"]
    # The approval as LangGraph's HumanInterrupt, every response allowed.
    assert interrupt["id"].startswith("apr_")
    value = interrupt["value"]
    assert value["action_request"] == {"action": "bash", "args": {"command": "echo one"}}
    assert set(value["config"].values()) == {True} and len(value["config"]) == 4
    assert [p.data for p in parts if p.event == "updates"][-1]["__interrupt__"] == [interrupt]
    assert (await lg.threads.get(tid))["status"] == "interrupted"
    assert (await lg.threads.get_state(tid))["interrupts"] == [interrupt]
    # accept: the call runs; the next one asks.
    accepted = await lg.runs.wait(tid, "default", command={"resume": [{"type": "accept"}]})
    assert isinstance(accepted, dict)
    tools = [m for m in accepted["messages"] if m["type"] == "tool"]
    assert [t["name"] for t in tools] == ["bash"] and "one" in tools[0]["content"]
    (second,) = accepted["__interrupt__"]
    assert second["value"]["action_request"]["args"] == {"command": "echo two"}
    with pytest.raises(httpx.HTTPStatusError) as bare:  # a string decides no approval
        await lg.runs.wait(tid, "default", command={"resume": "yes"})
    assert bare.value.response.status_code == 422
    # response: the call is denied, and the model told the text.
    denied = await lg.runs.wait(
        tid, "default", command={"resume": {"type": "response", "args": "not today"}}
    )
    assert isinstance(denied, dict) and "__interrupt__" not in denied
    tools = [m for m in denied["messages"] if m["type"] == "tool"]
    assert len(tools) == 2 and "not today" in tools[1]["content"]
    assert "two" not in tools[1]["content"] and denied["messages"][-1]["content"] == "done"
    assert (await lg.runs.list(tid))[0]["status"] == "success"

    # enqueue: the second run waits for the first, then continues its conversation.
    slow = script({"sleep": 1}, {"text": "first"})
    first = await lg.runs.create(
        tid, "default", input={"messages": [{"role": "user", "content": slow}]}, config=SCRIPTED
    )
    queued = await lg.runs.create(
        tid, "default", input=says("second"), config=SCRIPTED, multitask_strategy="enqueue"
    )
    assert queued["multitask_strategy"] == "enqueue" and queued["status"] == "pending"
    values = await lg.runs.join(tid, queued["run_id"])
    assert [m["content"] for m in values["messages"] if m["type"] == "ai"][-2:] == [
        "first",
        "second",
    ]
    assert (await lg.runs.get(tid, first["run_id"]))["status"] == "success"
    assert (await lg.runs.get(tid, queued["run_id"]))["multitask_strategy"] == "enqueue"
    # interrupt: the open run stops at its turn boundary, then the new one runs (its
    # model reads the conversation it continues; the scripted one does not parse that).
    held = script({"sleep": 2, "tool": "bash", "input": {"command": "echo never"}}, {"text": "x"})
    old = await lg.runs.create(
        tid, "default", input={"messages": [{"role": "user", "content": held}]}, config=SCRIPTED
    )
    newer = await lg.runs.create(
        tid, "default", input=says("now"), config=SCRIPTED, multitask_strategy="interrupt"
    )
    assert newer["multitask_strategy"] == "interrupt"

    async def stopped() -> bool:
        return bool((await lg.runs.get(tid, old["run_id"]))["status"] == "interrupted")

    await poll_until(stopped, "the interrupted run stopped at its turn boundary")
    await lg.runs.join(tid, newer["run_id"])  # then the newer one ran
    assert (await lg.runs.get(tid, newer["run_id"]))["status"] in ("success", "error")
