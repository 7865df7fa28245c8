"""The one place where Runyard features that LangGraph has words for plug into ``/lg``.

``Baseline`` is what is served today: questions are the only interrupts, a thread takes
one run at a time (``multitask_strategy: reject``), and a run starts from the thread's
latest checkpoint only. Approvals (tool calls waiting for a decision), thread strategies
(``interrupt``, ``rollback``, ``enqueue``) and checkpoints one can fork from replace the
methods here, in a subclass (``api.langgraph.served.Served``, what is served now, or
one set as ``app.state.lg_extensions``); nothing else in the package needs to change,
and ``/info`` reports their ``flags``.
"""

from __future__ import annotations

from typing import Any

from api.approvals import BatchItem
from api.langgraph.mapping import ASK_USER, Step, answer_of, ask_interrupt
from runyard.db.tables import Run
from runyard.domain import RunStatus
from runyard.errors import NotServed


class Baseline:
    # /info's flags: what this server serves of LangGraph's optional features.
    flags: dict[str, bool] = {
        "assistants": True,
        "crons": False,
        "langsmith": False,
        "store": False,
        "approvals": False,
        "multitask_strategies": False,  # only "reject"
        "checkpoint_fork": False,  # runs start from the thread's latest checkpoint only
    }

    def check_multitask(self, strategy: str | None) -> None:
        if strategy not in (None, "reject"):
            raise NotServed(
                f"multitask_strategy '{strategy}': only 'reject' is served (a thread takes "
                "one run at a time; a second gets 409)"
            )

    def check_start(self, checkpoint_id: str | None, head: str | None) -> None:
        """A run may name the thread's latest checkpoint (agent-chat-ui does), no other."""
        if checkpoint_id is not None and checkpoint_id != head:
            raise NotServed(
                f"starting from checkpoint {checkpoint_id}: runs start from the thread's "
                f"latest checkpoint ({head}) only; forks are not served yet"
            )

    def interrupts(
        self, status: str, last: Step | None, answered: set[str]
    ) -> list[dict[str, Any]]:
        """The interrupts pending after ``last``, the latest step of a run in ``status``."""
        if status != RunStatus.WAITING_FOR_INPUT or last is None or last.node != "agent":
            return []
        return [
            ask_interrupt(c["id"], str((c.get("args") or {}).get("question", "")))
            for c in last.pending_calls
            if c["name"] == ASK_USER and c["id"] not in answered
        ]

    def answer(self, resume: Any, pending: list[dict[str, Any]]) -> str:
        """The text that ``command.resume`` answers the pending question with."""
        return answer_of(resume, [i["id"] for i in pending])

    def approvals(self, run: Run) -> list[dict[str, Any]]:
        """The interrupts of the approvals ``run`` waits for (none: not served)."""
        return []

    def decisions(self, resume: Any, pending: list[dict[str, Any]]) -> list[BatchItem]:
        """The approval decisions that ``command.resume`` makes of ``pending``."""
        raise NotServed("deciding approvals through command.resume")
