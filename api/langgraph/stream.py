"""A Runyard run's events as LangGraph's server-sent events, and the long waits of
``/runs/wait`` and ``/join``.

The order is LangGraph's: ``metadata`` ``{run_id, attempt}`` first, then ``values``
(the state the run starts from), then for each step the ``messages`` of the model's
stream, an ``updates`` of what the step wrote and the ``values`` after it; a question
ends the stream with ``values`` holding ``__interrupt__``, and every stream closes with
``end`` (after an ``error`` when the run failed). Each frame that ends what one Runyard
event produced carries ``id: <seq>``: ``Last-Event-ID`` resumes after it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from api.langgraph.hooks import Baseline
from api.langgraph.mapping import ai_chunk, ai_message, ask_interrupt
from api.langgraph.views import History, thread_runs
from runyard.db.tables import Run, RunEvent
from runyard.domain import TERMINAL_EVENT_TYPES, TERMINAL_STATUSES, EventType, RunStatus
from runyard.notifier import Cached, EventNotifier

_BOUNDARIES = (EventType.MESSAGE_COMPLETED, EventType.TOOL_RESULT, EventType.RUN_INPUT_RECEIVED)


def frame(event: str, data: Any, event_id: int | None = None) -> bytes:
    body = json.dumps(data, separators=(",", ":"), default=str)
    tail = f"id: {event_id}\n" if event_id is not None else ""
    return f"event: {event}\ndata: {body}\n{tail}\n".encode()


def _row_key(event_key: str) -> str:
    """The transcript message an event announces (an answer, a result and a note share
    their key; a turn's ``turnN.completed`` announces ``turnN.assistant``)."""
    if event_key.endswith(".completed") and event_key.startswith("turn"):
        return event_key.removesuffix(".completed") + ".assistant"
    return event_key


def history_at(s: Session, run: Run, seq: int | None, ext: Baseline) -> History:
    """The state of ``run``'s thread as it was once the run's event ``seq`` was written
    (the runs before it, and its transcript up to that event); ``None``: now."""
    runs = [run]
    if run.thread_id:
        runs = [r for r in thread_runs(s, run.thread_id) if r.created_at <= run.created_at]
    history = History.read(s, run.thread_id, runs, ext)
    if seq is not None:
        stmt = select(col(RunEvent.key), col(RunEvent.seq)).where(
            col(RunEvent.run_id) == run.id, col(RunEvent.type).in_(list(_BOUNDARIES))
        )
        written = {_row_key(k): q for k, q in s.execute(stmt)}
        history.steps = [
            st
            for st in history.steps
            if st.run_id != run.id or st.key is None or written.get(st.key, seq + 1) <= seq
        ]
    return history


_ASKS = (EventType.RUN_WAITING_FOR_INPUT, EventType.APPROVAL_REQUESTED)


def _latest_wait(s: Session, run_id: str) -> tuple[Run | None, int]:
    """The run, and the seq of its latest question or approval request (0: none)."""
    stmt = select(func.max(col(RunEvent.seq))).where(
        col(RunEvent.run_id) == run_id, col(RunEvent.type).in_(list(_ASKS))
    )
    return s.get(Run, run_id), int(s.execute(stmt).scalar() or 0)


def settled(run: Run | None, asked: int, since: int) -> bool:
    """Whether a waiter that started at event ``since`` is done: the run ended, or asks
    a question it asked after ``since``."""
    if run is None or run.status in TERMINAL_STATUSES:
        return True
    return run.status == RunStatus.WAITING_FOR_INPUT and asked > since


class RunStream:
    def __init__(
        self,
        notifier: EventNotifier,
        run: Run,
        modes: list[str],
        ext: Baseline,
        cursor: int,
        *,
        initial: bool,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.notifier, self.run, self.modes, self.ext = notifier, run, set(modes), ext
        self.cursor, self.initial = cursor, initial
        # on_disconnect "cancel": called when the client goes away before the end.
        self.on_drop = on_drop
        self.partial: dict[str, str] = {}  # "messages" mode: each message's text so far

    def _meta(self) -> dict[str, Any]:
        return {
            "run_id": self.run.id,
            "thread_id": self.run.thread_id,
            "langgraph_node": "agent",
            "langgraph_checkpoint_ns": "",
            "ls_model_name": self.run.model,
        }

    async def frames(self) -> AsyncIterator[bytes]:
        dropped = True  # until the stream ends on its own (or the server stops)
        try:
            async for chunk in self._frames():
                yield chunk
            dropped = False
        finally:
            if dropped and self.on_drop is not None:
                self.on_drop()

    async def _frames(self) -> AsyncIterator[bytes]:
        sub = self.notifier.subscribe(self.run.id)
        try:
            yield frame("metadata", {"run_id": self.run.id, "attempt": 1})
            if self.initial and "values" in self.modes:
                history = await self.notifier.read(
                    partial(history_at, run=self.run, seq=self.cursor, ext=self.ext)
                )
                yield frame("values", history.values())
            while not self.notifier.closing:
                sub.clear()
                batch = await self._batch(sub)
                for ev in batch:
                    out, done = await self._convert(ev)
                    self.cursor = ev.seq
                    if out:
                        yield b"".join(out)
                    if done:
                        yield frame("end", None)
                        return
                if batch:
                    continue
                if await self._over():
                    yield frame("end", None)
                    return
                if not await sub.wait():
                    yield b": heartbeat\n\n"
        finally:
            sub.close()

    async def _over(self) -> bool:
        """Nothing more will come: the run ended (or waits) and the cursor is past it."""
        run, _ = await self.notifier.read(partial(_latest_wait, run_id=self.run.id))
        if run is None:
            return True
        stopped = run.status in TERMINAL_STATUSES or run.status == RunStatus.WAITING_FOR_INPUT
        return stopped and self.cursor >= run.last_seq

    async def _batch(self, sub: Any) -> list[Cached]:
        batch: list[Cached] | None = sub.cached(self.cursor)
        if batch is None:
            await self.notifier.seed(self.run.id)
            batch = sub.cached(self.cursor)
        if batch is None:
            batch = await self.notifier.events_after(self.run.id, self.cursor)
        return batch

    async def _convert(self, ev: Cached) -> tuple[list[bytes], bool]:
        """The frames of one Runyard event, and whether the stream ends with it."""
        data: dict[str, Any] = ev.json.get("data") or {}
        out: list[bytes] = []
        if ev.type == EventType.MESSAGE_DELTA:
            out += self._delta(str(data.get("messageId")), str(data.get("text", "")))
        elif ev.type == EventType.TURN_RETRIED:
            self.partial.pop(str(data.get("messageId")), None)
        elif ev.type in _BOUNDARIES:
            out += await self._step(ev)
        elif ev.type == EventType.RUN_WAITING_FOR_INPUT:
            interrupt = ask_interrupt(str(data.get("toolCallId")), str(data.get("question", "")))
            history = await self.notifier.read(
                partial(history_at, run=self.run, seq=ev.seq, ext=self.ext)
            )
            if "updates" in self.modes:
                out.append(frame("updates", {"__interrupt__": [interrupt]}))
            if "values" in self.modes:
                out.append(frame("values", {**history.values(), "__interrupt__": [interrupt]}))
            run, asked = await self.notifier.read(partial(_latest_wait, run_id=self.run.id))
            done = run is None or (
                run.status == RunStatus.WAITING_FOR_INPUT and run.last_seq == ev.seq == asked
            )
            return _last_with_id(out, ev.seq), done
        elif ev.type == EventType.APPROVAL_REQUESTED:
            return await self._approval(ev)
        elif ev.type in TERMINAL_EVENT_TYPES:
            if ev.type == EventType.RUN_FAILED:
                error = data.get("error") or {}
                out.append(
                    frame(
                        "error",
                        {
                            "error": error.get("code") or data.get("failReason") or "error",
                            "message": error.get("message") or data.get("failReason") or "failed",
                        },
                    )
                )
            return _last_with_id(out, ev.seq), True
        return _last_with_id(out, ev.seq), False

    async def _approval(self, ev: Cached) -> tuple[list[bytes], bool]:
        """Once a turn's last approval request is written and the run waits on it, its
        pending approvals are the ``__interrupt__``s, and the stream ends (a call the
        policy denied in the same turn shows in the state once the run goes on)."""
        run, asked = await self.notifier.read(partial(_latest_wait, run_id=self.run.id))
        if run is None:
            return [], True
        if not (run.status == RunStatus.WAITING_FOR_INPUT and ev.seq == asked):
            return [], False  # more to come, or already decided: the stream goes on
        pending = self.ext.approvals(run)
        out = []
        if pending and "updates" in self.modes:
            out.append(frame("updates", {"__interrupt__": pending}))
        if pending and "values" in self.modes:
            history = await self.notifier.read(
                partial(history_at, run=self.run, seq=ev.seq, ext=self.ext)
            )
            out.append(frame("values", {**history.values(), "__interrupt__": pending}))
        return _last_with_id(out, ev.seq), True

    def _delta(self, msg_id: str, text: str) -> list[bytes]:
        out = []
        if "messages-tuple" in self.modes:
            out.append(frame("messages", [ai_chunk(msg_id, text), self._meta()]))
        if "messages" in self.modes:
            if msg_id not in self.partial:
                out.append(frame("messages/metadata", {msg_id: {"metadata": self._meta()}}))
            self.partial[msg_id] = self.partial.get(msg_id, "") + text
            blocks = [{"type": "text", "text": self.partial[msg_id]}]
            out.append(frame("messages/partial", [ai_message(msg_id, blocks)]))
        return out

    async def _step(self, ev: Cached) -> list[bytes]:
        history = await self.notifier.read(
            partial(history_at, run=self.run, seq=ev.seq, ext=self.ext)
        )
        before = await self.notifier.read(
            partial(history_at, run=self.run, seq=ev.seq - 1, ext=self.ext)
        )
        new = history.steps[len(before.steps) :]
        out = []
        for step in new:
            if "messages" in self.modes and step.node == "agent":
                out.append(frame("messages/complete", [step.message]))
            if "updates" in self.modes:
                out.append(frame("updates", {step.node: {"messages": [step.message]}}))
        if new and "values" in self.modes:
            out.append(frame("values", history.values()))
        return out


def _last_with_id(frames: list[bytes], seq: int) -> list[bytes]:
    if frames:
        frames[-1] = frames[-1][:-1] + f"id: {seq}\n\n".encode()
    return frames


async def wait_body(
    notifier: EventNotifier, run_id: str, since: int, ext: Baseline
) -> AsyncIterator[bytes]:
    """Newlines while the run goes on (they keep proxies from cutting the answer), then
    the thread's values as the run left them: with ``__interrupt__`` when it asks, or
    ``__error__`` when it failed."""
    sub = notifier.subscribe(run_id)
    try:
        while True:
            sub.clear()
            run, asked = await notifier.read(partial(_latest_wait, run_id=run_id))
            if settled(run, asked, since) or notifier.closing:
                break
            if not await sub.wait():
                yield b"\n"
    finally:
        sub.close()
    yield json.dumps(await output(notifier, run_id, ext), separators=(",", ":")).encode()


async def output(notifier: EventNotifier, run_id: str, ext: Baseline) -> dict[str, Any]:
    def read(s: Session) -> tuple[Run | None, History | None]:
        run = s.get(Run, run_id)
        return run, (None if run is None else history_at(s, run, None, ext))

    run, history = await notifier.read(read)
    if run is None or history is None:
        return {"__error__": {"error": "RUN_NOT_FOUND", "message": f"{run_id} is gone"}}
    if run.status == RunStatus.FAILED:
        error = run.error or {}
        return {
            "__error__": {
                "error": error.get("code") or run.fail_reason or "error",
                "message": error.get("message") or run.fail_reason or "the run failed",
            }
        }
    values = history.values()
    pending = history.pending() if history.steps else []
    return {**values, "__interrupt__": pending} if pending else values
