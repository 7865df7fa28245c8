"""Store reads rendered as LangGraph objects: threads, thread states (checkpoints), runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from api.langgraph.bodies import unprocessable
from api.langgraph.hooks import Baseline
from api.langgraph.mapping import (
    GRAPH_ID,
    Step,
    next_nodes,
    run_status,
    run_steps,
    stamp,
    thread_status,
    with_checkpoints,
)
from runyard.checkpoints.tables import RunCheckpoint
from runyard.db.engine import Database
from runyard.db.tables import Run, RunMessage, Thread, ThreadRunOrder
from runyard.domain import RunStatus


def run_object(run: Run, strategy: str | None = None) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "thread_id": run.thread_id,
        "assistant_id": run.agent_id or run.template,
        "created_at": stamp(run.created_at),
        "updated_at": stamp(run.updated_at),
        "status": run_status(run.status, run.fail_reason),
        "metadata": run.metadata_ or {},
        "multitask_strategy": strategy or "reject",
        "kwargs": {},
    }


def strategies(s: Session, run_ids: list[str]) -> dict[str, str]:
    """The ``multitask_strategy`` of runs created with one other than ``reject``."""
    stmt = select(col(ThreadRunOrder.run_id), col(ThreadRunOrder.strategy))
    return {r: st for r, st in s.execute(stmt.where(col(ThreadRunOrder.run_id).in_(run_ids)))}


def thread_runs(s: Session, thread_id: str) -> list[Run]:
    stmt = select(Run).where(col(Run.thread_id) == thread_id)
    return list(s.scalars(stmt.order_by(col(Run.created_at), col(Run.id))))


def steps_of(s: Session, runs: list[Run]) -> list[Step]:
    """The steps of ``runs`` (in their order): each one's prompt and transcript."""
    if not runs:
        return []
    stmt = select(RunMessage).where(col(RunMessage.run_id).in_([r.id for r in runs]))
    rows: dict[str, list[tuple[str, str, list[dict[str, Any]], Any]]] = {r.id: [] for r in runs}
    for m in s.scalars(stmt.order_by(col(RunMessage.id))):
        rows[m.run_id].append((m.key, m.role, list(m.content or []), m.created_at))
    steps: list[Step] = []
    for run in runs:
        steps += run_steps(run.id, run.prompt, run.created_at, rows[run.id])
    taken = select(RunCheckpoint).where(
        col(RunCheckpoint.run_id).in_(list(rows)), col(RunCheckpoint.changed).is_(True)
    )
    return with_checkpoints(steps, {(c.run_id, c.turn): c.id for c in s.scalars(taken)})


@dataclass
class History:
    """A thread's (or a stateless run's) runs and steps, and its states built from them."""

    thread_id: str | None
    runs: dict[str, Run]
    steps: list[Step]
    ext: Baseline

    @classmethod
    def read(cls, s: Session, thread_id: str | None, runs: list[Run], ext: Baseline) -> History:
        return cls(thread_id, {r.id: r for r in runs}, steps_of(s, runs), ext)

    @property
    def head(self) -> str | None:
        return self.steps[-1].checkpoint_id if self.steps else None

    def index_of(self, checkpoint_id: str) -> int | None:
        return next(
            (i for i, st in enumerate(self.steps) if st.checkpoint_id == checkpoint_id), None
        )

    def _answered(self, upto: int) -> set[str]:
        run_id = self.steps[upto].run_id
        return {
            str(st.message.get("tool_call_id"))
            for st in self.steps[: upto + 1]
            if st.run_id == run_id and st.node == "tools"
        }

    def _last_of_run(self, i: int) -> bool:
        return i + 1 == len(self.steps) or self.steps[i + 1].run_id != self.steps[i].run_id

    def interrupts(self, i: int) -> list[dict[str, Any]]:
        if i < 0 or not self._last_of_run(i):
            return []
        run = self.runs[self.steps[i].run_id]
        asked = self.ext.interrupts(run.status, self.steps[i], self._answered(i))
        return asked + self.ext.approvals(run)

    def values(self, upto: int | None = None) -> dict[str, Any]:
        if not self.steps:
            return {}
        end = len(self.steps) if upto is None else upto + 1
        return {"messages": [st.message for st in self.steps[:end]]}

    def checkpoint(self, i: int) -> dict[str, Any]:
        return {
            "thread_id": self.thread_id,
            "checkpoint_ns": "",
            "checkpoint_id": self.steps[i].checkpoint_id,
            "checkpoint_map": None,
        }

    def state(self, i: int) -> dict[str, Any]:
        """The ThreadState of step ``i`` (LangGraph's checkpoint)."""
        step = self.steps[i]
        run = self.runs[step.run_id]
        nodes = next_nodes(step, self._answered(i))
        error = None
        if self._last_of_run(i) and run.status in (RunStatus.COMPLETED, RunStatus.CANCELLED):
            nodes = []
        elif self._last_of_run(i) and run.status == RunStatus.FAILED:
            error = (run.error or {}).get("message") or run.fail_reason
        interrupts = self.interrupts(i)
        tasks = [
            {
                "id": f"{step.checkpoint_id}:{name}",
                "name": name,
                "path": ["__pregel_pull", name],
                "error": error,
                "interrupts": interrupts,
                "checkpoint": None,
                "state": None,
                "result": None,
            }
            for name in nodes
        ]
        return {
            "values": self.values(i),
            "next": nodes,
            "tasks": tasks,
            "checkpoint": self.checkpoint(i),
            "metadata": {
                "source": "input" if step.node == "__input__" else "loop",
                "step": i - 1,
                "writes": {step.node: {"messages": [step.message]}},
                "parents": {},
                "run_id": step.run_id,
                "thread_id": self.thread_id,
                "graph_id": GRAPH_ID,
                "assistant_id": run.agent_id or run.template,
            },
            "created_at": stamp(step.created_at),
            "parent_checkpoint": self.checkpoint(i - 1) if i > 0 else None,
            "interrupts": interrupts,
        }

    def head_state(self) -> dict[str, Any]:
        if not self.steps:
            return {
                "values": {},
                "next": [],
                "tasks": [],
                "checkpoint": {
                    "thread_id": self.thread_id,
                    "checkpoint_ns": "",
                    "checkpoint_id": None,
                    "checkpoint_map": None,
                },
                "metadata": {},
                "created_at": None,
                "parent_checkpoint": None,
                "interrupts": [],
            }
        return self.state(len(self.steps) - 1)

    def pending(self) -> list[dict[str, Any]]:
        return self.interrupts(len(self.steps) - 1)

    def pending_of(self, run_id: str) -> list[dict[str, Any]]:
        """The interrupts ``run_id`` waits on (a run queued behind it may follow it)."""
        ends = [i for i, st in enumerate(self.steps) if st.run_id == run_id]
        return self.interrupts(ends[-1]) if ends else []


def thread_object(thread: Thread, history: History) -> dict[str, Any]:
    runs = list(history.runs.values())
    latest = runs[-1] if runs else None
    pending = history.pending() if history.steps else []
    return {
        "thread_id": thread.id,
        "created_at": stamp(thread.created_at),
        "updated_at": stamp(thread.updated_at),
        "state_updated_at": stamp(latest.updated_at if latest else thread.updated_at),
        "metadata": thread.metadata_ or {},
        "status": thread_status(latest.status if latest else None),
        "values": history.values(),
        "interrupts": {f"{history.head}:tools": pending} if pending else {},
        "config": {},
        "context": {},
    }


async def read_thread(
    db: Database, thread: Thread, ext: Baseline
) -> tuple[dict[str, Any], History]:
    history = await db.read(lambda s: History.read(s, thread.id, thread_runs(s, thread.id), ext))
    return thread_object(thread, history), history


def project(obj: dict[str, Any], select_: list[str] | None) -> dict[str, Any]:
    """Only the fields ``select`` names (LangGraph's ``select``), all without it."""
    if not select_:
        return obj
    unknown = sorted(set(select_) - set(obj))
    if unknown:
        raise unprocessable(
            [
                {
                    "field": "select",
                    "message": f"unknown field(s) {', '.join(unknown)}",
                    "code": "enum",
                }
            ]
        )
    return {k: v for k, v in obj.items() if k in select_}
