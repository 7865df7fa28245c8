"""Fake approval activities under the real names: a ``World`` whose store also keeps
approvals, with a policy of its own (which tools ask, which are denied)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from runyard.domain import RunStatus
from tests.workflows.fakes import World
from workflows.approval_payloads import (
    DecideResult,
    ExpireInput,
    GateInput,
    GateResult,
    RecordInput,
)


@dataclass
class FakeApproval:
    run_id: str
    call_id: str
    tool: str
    status: str = "pending"


class ApprovalWorld(World):
    def __init__(
        self,
        ask: frozenset[str] = frozenset({"bash"}),
        deny: frozenset[str] = frozenset(),
        timeout_seconds: int = 3600,
        on_timeout: str = "deny",
    ) -> None:
        super().__init__()
        self.ask, self.deny = ask, deny
        self.timeout_seconds, self.on_timeout = timeout_seconds, on_timeout
        self.approvals: dict[str, FakeApproval] = {}
        self.calls: dict[str, int] = {"gate": 0, "record": 0, "expire": 0}

    def _tool(self, run_id: str, call_id: str) -> str:
        turn, index = call_id.removeprefix("t").split(".")
        run = self.runs[run_id]
        return run.script[min(int(turn), len(run.script)) - 1].tools[int(index)]

    def pending(self, run_id: str) -> list[str]:
        return [
            k for k, a in self.approvals.items() if a.run_id == run_id and a.status == "pending"
        ]

    @activity.defn(name="gate_tool_calls")
    async def gate_tool_calls(self, inp: GateInput) -> GateResult:
        self.calls["gate"] += 1
        res = GateResult(timeout_seconds=self.timeout_seconds, on_timeout=self.on_timeout)
        for call_id in inp.call_ids:
            tool = self._tool(inp.run_id, call_id)
            if tool in self.deny:
                res.refused.append(call_id)
            elif tool in self.ask:
                apr = f"apr_{inp.run_id}_{call_id}"
                self.approvals.setdefault(apr, FakeApproval(inp.run_id, call_id, tool))
                res.pending.append(apr)
                res.pending_calls.append(call_id)
        if res.pending:
            run = self.runs[inp.run_id]
            self._set(run, RunStatus.WAITING_FOR_INPUT, {RunStatus.RUNNING}, "approval.requested")
        return res

    @activity.defn(name="record_decisions")
    async def record_decisions(self, inp: RecordInput) -> DecideResult:
        self.calls["record"] += 1
        found = [self.approvals.get(d.id) for d in inp.request.decisions]
        if any(a is None or a.status != "pending" for a in found):
            raise ApplicationError("no", type="APPROVAL_NOT_PENDING", non_retryable=True)
        for d in inp.request.decisions:
            self.approvals[d.id].status = {"approve": "approved", "edit": "edited"}.get(
                d.decision, "denied"
            )
        run = self.runs[inp.run_id]
        if not self.pending(inp.run_id):
            self._set(run, RunStatus.RUNNING, {RunStatus.WAITING_FOR_INPUT}, "approval.resolved")
        return DecideResult(decided=[d.id for d in inp.request.decisions])

    @activity.defn(name="expire_approvals")
    async def expire_approvals(self, inp: ExpireInput) -> None:
        self.calls["expire"] += 1
        for apr in inp.approval_ids:
            self.approvals[apr].status = "expired"
        self._set(self.runs[inp.run_id], RunStatus.RUNNING, {RunStatus.WAITING_FOR_INPUT}, None)

    def activities(self) -> list[Any]:
        return [
            *super().activities(),
            self.gate_tool_calls,
            self.record_decisions,
            self.expire_approvals,
        ]
