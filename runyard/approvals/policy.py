"""Approval policies: which tool calls wait for a person (``"ask"``), run (``"allow"``) or
are refused (``"deny"``).

A template holds the default policy, a run may add its own: the run's can only tighten,
so a call is decided by both and the stricter answer wins (deny > ask > allow). Within one
policy the rules are checked deny → ask → allow, then the default; an input that fails
its tool's schema is "ask" (unless a deny rule matches it). A person who approves with
``scope: "run"`` grants the rest of the run: a call a grant matches is allowed instead of
asked (a deny stays a deny).

This module imports no store and no workflow: the API checks policies with it, the
approval activities decide calls with it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

import regex
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from runyard.tools import REGISTRY, Tool

Action = Literal["ask", "allow", "deny"]
_STRICTNESS: dict[str, int] = {"allow": 0, "ask": 1, "deny": 2}
# The most rules a policy may hold, and the longest pattern: a policy is checked on
# every tool call of every turn.
MAX_RULES = 100
MAX_PATTERN = 1000
# A pattern is searched in at most this much of a value, for at most this long (the
# ``regex`` module's timeout): a pattern that backtracks without end cannot stall the
# worker. A search that times out counts as a match for deny and ask rules (the call
# waits or is refused) and as no match for allow rules.
MAX_MATCHED_CHARS = 100_000
MATCH_SECONDS = 0.05


class _Camel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class Rule(_Camel):
    tool: str
    # Field name → regular expression, searched (``re.search``) in the field's value;
    # every field named must match. A non-string value is matched as its JSON.
    match: dict[str, str] = Field(default_factory=dict)
    action: Action

    @field_validator("tool")
    @classmethod
    def _known_tool(cls, value: str) -> str:
        tool = REGISTRY.get(value)
        if tool is None or tool.where == "control":
            gated = ", ".join(n for n, t in REGISTRY.items() if t.where != "control")
            raise ValueError(f"unknown tool {value!r} (one of {gated})")
        return value

    @model_validator(mode="after")
    def _valid_match(self) -> Rule:
        fields = REGISTRY[self.tool].args.model_fields
        for name, pattern in self.match.items():
            if name not in fields:
                raise ValueError(f"{self.tool} has no input field {name!r}")
            if len(pattern) > MAX_PATTERN:
                raise ValueError(f"the pattern for {name!r} is over {MAX_PATTERN} characters")
            try:
                regex.compile(pattern)
            except regex.error as exc:
                raise ValueError(f"invalid regular expression for {name!r}: {exc}") from None
        return self

    def matches(self, tool: str, raw: dict[str, Any]) -> bool:
        return tool == self.tool and all(
            name in raw and self._search(pattern, _text(raw[name])[:MAX_MATCHED_CHARS])
            for name, pattern in self.match.items()
        )

    def _search(self, pattern: str, text: str) -> bool:
        try:
            return regex.search(pattern, text, timeout=MATCH_SECONDS) is not None
        except TimeoutError:
            return self.action != "allow"


class ApprovalPolicy(_Camel):
    """``{"rules": [...], "default": "allow"|"ask", "timeoutSeconds", "onTimeout"}``."""

    rules: list[Rule] = Field(default_factory=list, max_length=MAX_RULES)
    default: Literal["allow", "ask"] = "allow"
    timeout_seconds: int = Field(default=86_400, ge=1, le=30 * 86_400)
    on_timeout: Literal["deny", "fail"] = "deny"

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class Decision(BaseModel):
    action: Action
    # The rule that decided, as written in the policy (None: the default, or the schema).
    rule: dict[str, Any] | None = None
    # Why, in words (a denied call's result says it).
    reason: str


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _decide_one(policy: ApprovalPolicy, tool: str, raw: dict[str, Any]) -> Decision:
    for action in ("deny", "ask", "allow"):
        for rule in policy.rules:
            if rule.action == action and rule.matches(tool, raw):
                wire = rule.model_dump(mode="json", by_alias=True)
                return Decision(action=rule.action, rule=wire, reason=f"rule {wire}")
    return Decision(action=policy.default, reason=f"the policy's default ({policy.default})")


def _tool_asks(tool: str, raw: Any, tools: Mapping[str, Tool[Any]]) -> str | None:
    """Why the call must be asked whatever the rules say, or None: its input fails the
    tool's schema, or the tool's own policy hook (``Tool.requires_approval``) asks."""
    found = tools.get(tool)
    if found is None:
        return f"unknown tool {tool!r}"
    if not isinstance(raw, dict):
        return "the input fails the tool's schema: it is no object"
    try:
        args = found.parse(raw)
    except ValueError as exc:
        return f"the input fails the tool's schema: {exc}"
    return f"the {tool} tool asks for approval" if found.requires_approval(args) else None


def decide(
    policies: list[ApprovalPolicy],
    tool: str,
    raw: Any,
    grants: list[Rule] | None = None,
    *,
    tools: Mapping[str, Tool[Any]] = REGISTRY,
) -> Decision:
    """The stricter answer of ``policies`` (the template's, then the run's) for one call;
    ``tools`` is the registry whose schemas and hooks are asked."""
    args: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if tool not in tools:  # nothing to approve: the call fails as an unknown tool
        return Decision(action="allow", reason=f"no tool {tool!r}")
    found = [_decide_one(p, tool, args) for p in policies]
    decision = max(found, key=lambda d: _STRICTNESS[d.action], default=None)
    if decision is None or decision.action == "deny":
        return decision or Decision(action="allow", reason="no policy")
    problem = _tool_asks(tool, raw, tools)
    if problem is not None:
        decision = Decision(action="ask", reason=problem)
    if decision.action == "ask" and any(g.matches(tool, args) for g in grants or []):
        return Decision(action="allow", reason="approved for the rest of the run")
    return decision


def combined_timeout(policies: list[ApprovalPolicy]) -> tuple[int, str]:
    """How long a call waits (the shorter) and what its expiry does (the run's say)."""
    seconds = min(p.timeout_seconds for p in policies)
    return seconds, policies[-1].on_timeout


def grant_for(tool: str, raw: Any, rule: dict[str, Any] | None) -> Rule:
    """The allow rule a ``scope: "run"`` approval adds: the asking rule's tool and match,
    or (a call the default or its schema asked about) this call's exact input."""
    if rule is not None and rule.get("match") is not None:
        return Rule(tool=tool, match=dict(rule["match"]), action="allow")
    args: dict[str, Any] = raw if isinstance(raw, dict) else {}
    fields = REGISTRY[tool].args.model_fields
    exact = {k: f"^{re.escape(_text(v))}$" for k, v in args.items() if k in fields}
    return Rule(tool=tool, match=exact, action="allow")


def policies_of(stored: dict[str, Any] | None) -> tuple[list[ApprovalPolicy], list[Rule]]:
    """A run's stored ``{"policies": [...], "grants": [...]}``."""
    if not stored:
        return [], []
    policies = [ApprovalPolicy.model_validate(p) for p in stored.get("policies", [])]
    grants = [Rule.model_validate(g) for g in stored.get("grants", [])]
    return policies, grants
