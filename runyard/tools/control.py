"""The control tools: calls the workflow answers itself, with no sandbox and no activity.

``ask_user`` makes the run wait for the user's answer (``RunWorkflow.ask``); the answer
is the tool's result.
"""

from __future__ import annotations

from runyard.tools.base import Tool, ToolArgs


class AskArgs(ToolArgs):
    question: str


ASK_USER = Tool(
    "ask_user",
    "Ask the user a question and wait for the answer, when you cannot "
    "go on without a decision or information only they have.",
    AskArgs,
    "control",
)
