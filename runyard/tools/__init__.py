"""The agent's tools: one registry (``runyard.tools.registry``) of tools, each a pydantic
input model, where it runs and how (``runyard.tools.base``)."""

from runyard.tools.base import Call, Tool, ToolArgs, ToolOutput, Where
from runyard.tools.context import ToolContext
from runyard.tools.outputs import after_bash
from runyard.tools.registry import (
    REGISTRY,
    TOOLS,
    is_control,
    needs_context,
    refusal,
    run_tool,
)
from runyard.tools.workspace import MAX_LIST_ENTRIES, MAX_OUTPUT_CHARS, MAX_READ_BYTES

__all__ = [
    "MAX_LIST_ENTRIES",
    "MAX_OUTPUT_CHARS",
    "MAX_READ_BYTES",
    "REGISTRY",
    "TOOLS",
    "Call",
    "Tool",
    "ToolArgs",
    "ToolContext",
    "ToolOutput",
    "Where",
    "after_bash",
    "is_control",
    "needs_context",
    "refusal",
    "run_tool",
]
