"""What /lg serves on main (api/langgraph/served.py): approvals as HumanInterrupts and
the HumanResponses of command.resume as decisions; every multitask_strategy."""

from __future__ import annotations

from typing import Any

import pytest

from api.langgraph.hooks import Baseline
from api.langgraph.mapping import run_steps, with_checkpoints
from api.langgraph.served import Served, approval_interrupt, decisions_of
from runyard.db.tables import Run
from runyard.errors import InvalidInput, NotServed


def pending(*ids: str) -> list[dict[str, Any]]:
    return [
        approval_interrupt({"id": i, "tool": "bash", "input": {"command": f"echo {i}"}})
        for i in ids
    ]


def test_an_approval_is_a_human_interrupt() -> None:
    (one,) = pending("apr_1")
    assert one["id"] == "apr_1"
    assert one["value"]["action_request"] == {"action": "bash", "args": {"command": "echo apr_1"}}
    assert one["value"]["config"] == {
        "allow_ignore": True, "allow_respond": True, "allow_edit": True, "allow_accept": True,
    }  # fmt: skip
    assert "bash" in one["value"]["description"]


def test_human_responses_decide() -> None:
    only = pending("apr_1")
    (accept,) = decisions_of({"type": "accept", "args": None}, only)
    assert (accept.id, accept.decision, accept.input, accept.message) == (
        "apr_1", "approve", None, None,
    )  # fmt: skip
    (edit,) = decisions_of(
        [{"type": "edit", "args": {"action": "bash", "args": {"command": "ls"}}}], only
    )
    assert (edit.decision, edit.input) == ("edit", {"command": "ls"})
    (said,) = decisions_of({"apr_1": {"type": "response", "args": "no"}}, only)
    assert (said.decision, said.message) == ("deny", "no")
    (ignored,) = decisions_of({"type": "ignore"}, only)
    assert (ignored.decision, ignored.message) == ("deny", None)
    two = pending("apr_1", "apr_2")
    both = decisions_of([{"type": "accept"}, {"type": "ignore"}], two)
    assert [(d.id, d.decision) for d in both] == [("apr_1", "approve"), ("apr_2", "deny")]
    (second,) = decisions_of({"apr_2": {"type": "accept"}}, two)
    assert second.id == "apr_2"


@pytest.mark.parametrize(
    "resume",
    [
        "yes",
        {"type": "maybe"},
        {"type": "response", "args": ""},
        {"type": "response", "args": "x" * 5000},
        {"type": "edit", "args": {"command": "ls"}},
        {"type": "edit", "args": {"action": "write_file", "args": {}}},
        [{"type": "accept"}, {"type": "accept"}],
    ],
)
def test_what_decides_no_approval(resume: Any) -> None:
    with pytest.raises(InvalidInput):
        decisions_of(resume, pending("apr_1"))


def test_several_waiting_need_one_response_each() -> None:
    with pytest.raises(InvalidInput):
        decisions_of({"type": "accept"}, pending("apr_1", "apr_2"))


def test_served_and_baseline() -> None:
    run = Run(
        id="run_x",
        org_id="o",
        prompt="p",
        status="waiting_for_input",
        model="m",
        workflow_id="run_x",
    )
    run.waiting_for = "approval"
    run.pending_approvals = [
        {"id": "apr_1", "tool": "bash", "input": {"command": "x"}, "status": "pending"}
    ]
    served, base = Served(), Baseline()
    assert [i["id"] for i in served.approvals(run)] == ["apr_1"]
    assert base.approvals(run) == []
    run.waiting_for = "question"
    assert served.approvals(run) == []
    with pytest.raises(NotServed):
        base.decisions({"type": "accept"}, pending("apr_1"))
    with pytest.raises(NotServed):
        base.check_multitask("enqueue")
    for strategy in ("reject", "enqueue", "interrupt", "rollback", None):
        served.check_multitask(strategy)
    assert served.flags["approvals"] and served.flags["multitask_strategies"]
    assert not served.flags["checkpoint_fork"]


def test_a_turn_that_changed_files_is_its_runyard_checkpoint() -> None:
    call = {"type": "tool_use", "id": "c1", "name": "bash", "input": {"command": "x"}}
    result = {"type": "tool_result", "tool_use_id": "c1", "content": "ok"}
    rows: list[tuple[str, str, list[dict[str, Any]], Any]] = [
        ("turn1.assistant", "assistant", [call], None),
        ("turn1.result.c1", "tool_result", [result], None),
        ("note.k", "user", [{"type": "text", "text": "hi"}], None),
        ("turn2.assistant", "assistant", [{"type": "text", "text": "done"}], None),
    ]
    steps = with_checkpoints(run_steps("run_a", "p", None, rows), {("run_a", 1): "ckp_1"})
    # The turn's last message ends it: its result; the other steps keep their ids.
    assert [s.checkpoint_id for s in steps] == ["run_a.0", "run_a.1", "ckp_1", "run_a.3", "run_a.4"]
    with pytest.raises(NotServed) as refused:
        Served().check_start("run_a.1", "run_a.4")
    assert "fork" in str(refused.value)
    Served().check_start("run_a.4", "run_a.4")
