"""The tool registry: the schemas the model sees are derived from each tool's input model
and are exactly what they were when they were hand-written dicts (tool_schemas.json); the
input checks, the control tools and the package's imports."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any

import pytest

from runyard.tools import REGISTRY, TOOLS, needs_context, refusal, run_tool
from runyard.tools.base import ToolArgs
from workflows.agent_loop import AgentLoop
from workflows.payloads import RunInput, WaitInput

HERE = Path(__file__).parent
PACKAGE = HERE.parents[1] / "runyard" / "tools"


def test_the_model_sees_the_schemas_it_saw_before_the_registry() -> None:
    before = json.loads((HERE / "tool_schemas.json").read_text())
    # Same tools, same order, same fields, required lists, defaults and key order.
    assert json.dumps(TOOLS) == json.dumps(before)


def test_every_tool_is_one_registry_entry_with_a_runner_unless_it_is_a_control_tool() -> None:
    assert [t["name"] for t in TOOLS] == list(REGISTRY)
    for tool in REGISTRY.values():
        assert issubclass(tool.args, ToolArgs), tool.name
        assert (tool.run is None) == (tool.where == "control"), tool.name
    assert {n for n, t in REGISTRY.items() if t.where == "control"} == {"ask_user"}
    assert {n for n, t in REGISTRY.items() if t.where == "output"} == {
        "create_pull_request",
        "create_issue",
        "save_artifact",
    }


class _Run:
    waiting = False

    async def ask(self, question: WaitInput, wait_seconds: int) -> bool:
        return True

    def set_running(self, details: str) -> None: ...

    def set_details(self, details: str) -> None: ...


def test_the_loop_answers_every_control_tool_and_nothing_else() -> None:
    loop = AgentLoop(_Run(), RunInput(run_id="run_x", org_id="org_x", model="scripted"))
    assert set(loop.controls) == {n for n, t in REGISTRY.items() if t.where == "control"}


def test_no_tool_requires_approval_yet() -> None:
    samples: dict[str, dict[str, Any]] = {
        "bash": {"command": "rm -rf /"},
        "read_file": {"path": "a"},
        "write_file": {"path": "a", "content": ""},
        "edit_file": {"path": "a", "old_string": "x", "new_string": "y"},
        "list_files": {},
        "ask_user": {"question": "?"},
        "create_pull_request": {"title": "t"},
        "create_issue": {"title": "t"},
        "save_artifact": {"path": "a"},
    }
    assert set(samples) == set(REGISTRY)
    for name, raw in samples.items():
        tool = REGISTRY[name]
        assert tool.requires_approval(tool.parse(raw)) is False


@pytest.mark.parametrize(
    ("name", "raw", "field"),
    [
        ("bash", {}, "command"),
        ("bash", {"command": 1}, "command"),
        ("bash", {"command": "ls", "timeout": 0}, "timeout"),
        ("bash", {"command": "ls", "timeout": -1}, "timeout"),
        ("bash", {"command": "ls", "timeout": "5"}, "timeout"),
        ("bash", {"command": "ls", "timeout": None}, "timeout"),
        ("read_file", {"path": None}, "path"),
        ("list_files", {"path": 3}, "path"),
        ("save_artifact", {"path": "a", "name": None}, "name"),
        ("create_pull_request", {"title": "t", "branch": None}, "branch"),
        ("create_pull_request", {"title": "t", "body": None}, "body"),
        ("create_issue", {"title": "t", "labels": ["a", 1]}, "labels"),
        ("create_issue", {"title": "t", "labels": "a"}, "labels"),
    ],
)
def test_a_wrong_input_names_its_field(name: str, raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"'{field}'"):
        REGISTRY[name].parse(raw)


def test_what_may_be_left_out_or_null_as_before() -> None:
    bash = REGISTRY["bash"].parse({"command": "ls", "timeout": 5, "other": "ignored"})
    assert (bash.command, bash.timeout) == ("ls", 5.0)
    assert REGISTRY["list_files"].parse({}).path == "."
    pr = REGISTRY["create_pull_request"].parse({"title": "t", "base": None, "draft": None})
    assert (pr.body, pr.branch, pr.base, pr.draft) == ("", None, None, None)
    assert REGISTRY["create_issue"].parse({"title": "t", "labels": None}).labels is None


def test_json_rules_refuse_every_call_but_a_control_tools() -> None:
    assert refusal("bash", {"command": "ls"}) is None
    assert refusal("bash", {"command": "ls", "timeout": math.nan}) is not None
    assert refusal("no_such_tool", {"x": "\x00"}) is not None
    assert refusal("ask_user", {"question": "why\x00"}) is None


def test_which_calls_need_the_runs_context() -> None:
    assert needs_context("create_issue", {})
    assert needs_context("bash", {"command": "git push origin x"})
    assert not needs_context("bash", {"command": "ls"})
    assert not needs_context("ask_user", {"question": "push?"})
    assert not needs_context("nope", {})


async def test_calls_that_run_nowhere_are_tool_errors() -> None:
    sandbox: Any = object()  # never touched
    unknown = await run_tool(sandbox, "nope", {}, timeout=1)
    control = await run_tool(sandbox, "ask_user", {"question": "?"}, timeout=1)
    output = await run_tool(sandbox, "create_issue", {"title": "t"}, timeout=1)
    assert unknown.is_error and control.is_error and output.is_error
    assert output.text == "create_issue is not available here"
    bad = await run_tool(sandbox, "bash", {"command": 1}, timeout=1)
    assert bad.is_error and "'command'" in bad.text


def test_the_tools_package_has_no_import_circle() -> None:
    """Every import in runyard/tools is at module level, and they form no cycle."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        here = f"runyard.tools.{path.stem}" if path.stem != "__init__" else "runyard.tools"
        deps = graph.setdefault(here, set())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("runyard"):
                assert id(node) in top or _type_checking_only(tree, node), (here, node.module)
                if not _type_checking_only(tree, node):
                    deps.add(str(node.module))
    seen: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in seen:
            return
        for dep in graph.get(module, ()):
            visit(dep, (*path, module))
        seen.add(module)

    for module in graph:
        visit(module, ())


def _type_checking_only(tree: ast.Module, node: ast.ImportFrom) -> bool:
    return any(
        isinstance(top, ast.If)
        and isinstance(top.test, ast.Name)
        and top.test.id == "TYPE_CHECKING"
        and node in top.body
        for top in tree.body
    )
