"""The agent's tools: their JSON schemas for the model, and how each runs in a sandbox.

Tools run against the ``Sandbox`` protocol only, so every provider gets the same tools.
A tool's failure is a result the model sees (``is_error``), never an activity failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runyard.db.tables import Artifact
from runyard.output_tools import NAMES, OUTPUT_TOOLS, ToolContext, run_output_tool
from runyard.sandbox.base import ResourceLimitExceeded, Sandbox, ToolError

MAX_OUTPUT_CHARS = 30_000
MAX_LIST_ENTRIES = 2_000
# read_file reads at most this much of a file (enough for MAX_OUTPUT_CHARS characters
# of any UTF-8); a bigger file shows its head and says how big it is.
MAX_READ_BYTES = 4 * MAX_OUTPUT_CHARS

TOOLS: list[dict[str, Any]] = [
    {
        "name": "bash",
        "description": "Run a bash command in the workspace (/workspace, a git clone of "
        "the run's repository) and return its exit code, stdout and stderr. No network "
        "unless the template allows it. To publish work, commit it and run "
        "`git push origin <branch>` (origin needs no network or credentials: Runyard "
        "forwards the branch upstream and the result says so; the default branch, "
        "deletions and force pushes are refused). Work left unpushed is kept as a patch.",
        "input_schema": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The command to run."},
                "timeout": {"type": "number", "description": "Seconds before it is killed."},
            },
            "required": ["command"],
        },
    },
    {
        "name": "read_file",
        "description": "Read a text file of the workspace.",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}},
            "required": ["path"],
        },
    },
    {
        "name": "write_file",
        "description": "Create or overwrite a file of the workspace with the given content.",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
    {
        "name": "edit_file",
        "description": "Replace one exact occurrence of old_string with new_string in a file.",
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "old_string": {"type": "string"},
                "new_string": {"type": "string"},
            },
            "required": ["path", "old_string", "new_string"],
        },
    },
    {
        "name": "list_files",
        "description": "List the files under a directory of the workspace (recursively).",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string", "default": "."}},
        },
    },
    {
        "name": "ask_user",
        "description": "Ask the user a question and wait for the answer, when you cannot "
        "go on without a decision or information only they have.",
        "input_schema": {
            "type": "object",
            "properties": {"question": {"type": "string"}},
            "required": ["question"],
        },
    },
]


TOOLS += OUTPUT_TOOLS


@dataclass(frozen=True)
class ToolOutput:
    text: str
    is_error: bool = False
    outputs: tuple[dict[str, Any], ...] = ()  # branch, pr, issue … recorded with the result
    artifacts: tuple[Artifact, ...] = ()


def _clip(text: str) -> str:
    if len(text) <= MAX_OUTPUT_CHARS:
        return text
    half = MAX_OUTPUT_CHARS // 2
    return f"{text[:half]}\n… [{len(text) - MAX_OUTPUT_CHARS} characters cut] …\n{text[-half:]}"


def _str_arg(args: dict[str, Any], name: str, default: str | None = None) -> str:
    value = args.get(name, default)
    if not isinstance(value, str):
        raise ValueError(f"'{name}' must be a string")
    return value


async def run_tool(
    sandbox: Sandbox,
    name: str,
    args: dict[str, Any],
    *,
    timeout: float,
    ctx: ToolContext | None = None,
) -> ToolOutput:
    """Run one tool call; any error becomes an ``is_error`` result for the model."""
    try:
        if name in NAMES:
            if ctx is None:
                return ToolOutput(f"{name} is not available here", is_error=True)
            return await run_output_tool(sandbox, name, args, ctx)
        return await _dispatch(sandbox, name, args, timeout)
    except ToolError as exc:
        return ToolOutput(str(exc), is_error=True)
    except (ValueError, OSError, UnicodeDecodeError) as exc:  # the output tools' host side
        return ToolOutput(f"{type(exc).__name__}: {exc}", is_error=True)


async def _dispatch(
    sandbox: Sandbox, name: str, args: dict[str, Any], timeout: float
) -> ToolOutput:
    if name == "bash":
        limit = args.get("timeout", timeout)
        if not isinstance(limit, int | float) or limit <= 0:
            raise ValueError("'timeout' must be a positive number")
        res = await sandbox.exec(_str_arg(args, "command"), timeout=min(float(limit), timeout))
        if res.oom_killed:
            raise ResourceLimitExceeded("the command went over the sandbox's memory limit")
        parts = [f"exit code: {res.exit_code}" + (" (timed out)" if res.timed_out else "")]
        if res.stdout:
            parts.append(f"stdout:\n{res.stdout}")
        if res.stderr:
            parts.append(f"stderr:\n{res.stderr}")
        return ToolOutput(_clip("\n".join(parts)), is_error=res.exit_code != 0)
    if name == "read_file":
        return ToolOutput(await _read_text(sandbox, _str_arg(args, "path")))
    if name == "write_file":
        path, content = _str_arg(args, "path"), _str_arg(args, "content")
        await sandbox.write_file(path, content.encode())
        return ToolOutput(f"wrote {len(content.encode())} bytes to {path}")
    if name == "edit_file":
        path = _str_arg(args, "path")
        old, new = _str_arg(args, "old_string"), _str_arg(args, "new_string")
        await sandbox.edit_file(path, old, new)
        return ToolOutput(f"edited {path}")
    if name == "list_files":
        files = await sandbox.list_files(_str_arg(args, "path", "."), max_entries=MAX_LIST_ENTRIES)
        suffix = f"\n… (first {MAX_LIST_ENTRIES} shown)" if len(files) >= MAX_LIST_ENTRIES else ""
        return ToolOutput("\n".join(files) + suffix if files else "(no files)")
    return ToolOutput(f"unknown tool {name!r}", is_error=True)


async def _read_text(sandbox: Sandbox, path: str) -> str:
    content = await sandbox.read_file(path, max_bytes=MAX_READ_BYTES)
    data = content.data[:MAX_READ_BYTES]  # the sandbox's sizes are not trusted
    if not content.truncated:
        return _clip(data.decode("utf-8"))
    # The cap may split a character: drop an incomplete one at the end, never more.
    for cut in range(4):
        try:
            text = data[: len(data) - cut].decode("utf-8")
            break
        except UnicodeDecodeError as exc:
            if cut == 3 or exc.start < len(data) - 4:
                raise
    head = text[:MAX_OUTPUT_CHARS]
    return (
        f"{head}\n… [the file is {content.size} bytes; only its first {len(head)} "
        "characters are shown: use bash (head, tail, sed -n, grep) for the rest]"
    )
