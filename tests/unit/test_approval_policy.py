"""Approval policies (``runyard.approvals.policy``): rule order, the stricter of the
template's and the run's, schema-failing input, grants, and what a policy refuses."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import ValidationError

from runyard.approvals.policy import ApprovalPolicy, Rule, decide, grant_for
from runyard.tools import REGISTRY


def policy(**kw: object) -> ApprovalPolicy:
    return ApprovalPolicy.model_validate(kw)


PUSH = {"tool": "bash", "match": {"command": r"git\s+push"}, "action": "ask"}
RM = {"tool": "bash", "match": {"command": r"rm -rf"}, "action": "deny"}
ALL_BASH = {"tool": "bash", "action": "allow"}


def test_rules_are_checked_deny_then_ask_then_allow_then_default() -> None:
    p = policy(rules=[ALL_BASH, PUSH, RM], default="ask")
    assert decide([p], "bash", {"command": "rm -rf / && git push"}).action == "deny"
    assert decide([p], "bash", {"command": "git push origin x"}).action == "ask"
    assert decide([p], "bash", {"command": "ls"}).action == "allow"
    assert decide([p], "read_file", {"path": "a"}).action == "ask"  # the default
    asked = decide([p], "bash", {"command": "git push"})
    assert asked.rule == PUSH


def test_the_run_can_only_tighten() -> None:
    template = policy(rules=[PUSH])
    run = policy(rules=[{"tool": "bash", "match": {"command": "git"}, "action": "allow"}])
    assert decide([template, run], "bash", {"command": "git push"}).action == "ask"
    stricter = policy(default="ask")
    assert decide([template, stricter], "read_file", {"path": "a"}).action == "ask"


def test_input_that_fails_its_schema_is_asked_unless_denied() -> None:
    p = policy(rules=[RM])
    assert decide([p], "bash", {"command": 3}).action == "ask"
    assert decide([p], "bash", {}).action == "ask"
    assert decide([p], "bash", "not an object").action == "ask"
    assert decide([p], "bash", {"command": "rm -rf x", "timeout": -1}).action == "deny"


def test_a_grant_allows_what_would_be_asked_never_what_is_denied() -> None:
    p = policy(rules=[PUSH, RM])
    grant = grant_for("bash", {"command": "git push"}, PUSH)
    assert grant.match == PUSH["match"]
    assert decide([p], "bash", {"command": "git push -f"}, [grant]).action == "allow"
    assert decide([p], "bash", {"command": "rm -rf; git push"}, [grant]).action == "deny"
    exact = grant_for("write_file", {"path": "a.txt", "content": "x"}, None)
    q = policy(default="ask")
    assert decide([q], "write_file", {"path": "a.txt", "content": "x"}, [exact]).action == "allow"
    assert decide([q], "write_file", {"path": "a.txt", "content": "y"}, [exact]).action == "ask"


@pytest.mark.parametrize(
    "rule",
    [
        {"tool": "bash", "match": {"command": "("}, "action": "ask"},  # invalid regex
        {"tool": "nope", "action": "ask"},  # unknown tool
        {"tool": "ask_user", "action": "ask"},  # a control tool is never gated
        {"tool": "bash", "match": {"cmd": "x"}, "action": "ask"},  # no such field
        {"tool": "bash", "action": "maybe"},
    ],
)
def test_a_bad_rule_is_refused(rule: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        policy(rules=[rule])


def test_no_policy_allows() -> None:
    assert decide([], "bash", {"command": "x"}).action == "allow"
    assert Rule(tool="bash", action="allow").matches("bash", {})


def test_a_pattern_that_backtracks_forever_fails_closed() -> None:
    slow = r"^(a|aa)+$"
    text = {"command": "a" * 60 + "b"}
    asks = policy(rules=[{"tool": "bash", "match": {"command": slow}, "action": "ask"}])
    assert decide([asks], "bash", text).action == "ask"
    allows = policy(
        rules=[{"tool": "bash", "match": {"command": slow}, "action": "allow"}], default="ask"
    )
    assert decide([allows], "bash", text).action == "ask"


def test_the_tools_own_hook_asks_whatever_the_rules_say() -> None:
    bash = REGISTRY["bash"]
    tools = {**REGISTRY, "bash": replace(bash, approval=lambda args: "sudo" in args.command)}
    allow_all = policy(rules=[ALL_BASH])
    assert decide([allow_all], "bash", {"command": "sudo ls"}, tools=tools).action == "ask"
    assert decide([allow_all], "bash", {"command": "ls"}, tools=tools).action == "allow"
    assert decide([allow_all], "bash", {"command": "sudo ls"}).action == "allow"  # no tool asks


def test_a_call_of_no_known_tool_is_not_asked_about() -> None:
    assert decide([policy(default="ask")], "teleport", {}).action == "allow"
