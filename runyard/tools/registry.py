"""The tool registry: every tool the agent may call, in the order the model sees them.

The model's tool list (``TOOLS``), the checks of a call's input and the docs' tool table
(``tests/unit/test_docs_match_code.py``) all come from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runyard.jsonsafe import json_problem
from runyard.sandbox.base import Sandbox, ToolError
from runyard.tools.base import Call, Tool, ToolOutput
from runyard.tools.context import ToolContext
from runyard.tools.control import ASK_USER
from runyard.tools.outputs import CREATE_ISSUE, CREATE_PULL_REQUEST, SAVE_ARTIFACT, might_push
from runyard.tools.workspace import BASH, EDIT_FILE, LIST_FILES, READ_FILE, WRITE_FILE

REGISTRY: Mapping[str, Tool[Any]] = {
    t.name: t
    for t in (
        BASH,
        READ_FILE,
        WRITE_FILE,
        EDIT_FILE,
        LIST_FILES,
        ASK_USER,
        CREATE_PULL_REQUEST,
        CREATE_ISSUE,
        SAVE_ARTIFACT,
    )
}
# The model's tool list, as ``ModelRequest.tools`` takes it.
TOOLS: list[dict[str, Any]] = [t.schema() for t in REGISTRY.values()]


def is_control(name: str) -> bool:
    """Whether the workflow answers this call itself (no ``run_tool`` activity)."""
    tool = REGISTRY.get(name)
    return tool is not None and tool.where == "control"


def refusal(name: str, raw: Any) -> str | None:
    """Why a call is refused before anything runs, or None.

    A model's tool input is JSON from outside like a client's body, under the same rules
    (``runyard.jsonsafe``): a non-finite number, a NUL character or too deep a nesting
    refuses the call (the agent sees a tool error). A control tool is never refused: the
    workflow handles the call (``ask_user`` asks its question, a NUL in it shown as U+FFFD).
    """
    return None if is_control(name) else json_problem(raw)


def needs_context(name: str, args: Mapping[str, Any]) -> bool:
    """Whether a tool call needs the run's context (a store read): output tools, and a
    ``bash`` command that may push."""
    tool = REGISTRY.get(name)
    if tool is None:
        return False
    return tool.where == "output" or (tool is BASH and might_push(str(args.get("command", ""))))


async def run_tool(
    sandbox: Sandbox,
    name: str,
    args: Mapping[str, Any],
    *,
    timeout: float,
    ctx: ToolContext | None = None,
) -> ToolOutput:
    """Run one tool call; any error becomes an ``is_error`` result for the model."""
    tool = REGISTRY.get(name)
    if tool is None or tool.run is None:
        return ToolOutput(f"unknown tool {name!r}", is_error=True)
    if tool.where == "output" and ctx is None:
        return ToolOutput(f"{name} is not available here", is_error=True)
    try:
        return await tool.run(sandbox, tool.parse(args), Call(timeout, ctx))
    except ToolError as exc:
        return ToolOutput(str(exc), is_error=True)
    except (ValueError, OSError, UnicodeDecodeError) as exc:  # the output tools' host side
        return ToolOutput(f"{type(exc).__name__}: {exc}", is_error=True)
