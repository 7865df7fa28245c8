"""The sandbox tools: ``bash``, ``read_file``, ``write_file``, ``edit_file``, ``list_files``.

They run against the ``Sandbox`` protocol only, so every provider gets the same tools.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from runyard.sandbox.base import ResourceLimitExceeded, Sandbox
from runyard.tools.base import Call, Tool, ToolArgs, ToolOutput, not_null

MAX_OUTPUT_CHARS = 30_000
MAX_LIST_ENTRIES = 2_000
# read_file reads at most this much of a file (enough for MAX_OUTPUT_CHARS characters
# of any UTF-8); a bigger file shows its head and says how big it is.
MAX_READ_BYTES = 4 * MAX_OUTPUT_CHARS


def clip(text: str) -> str:
    if len(text) <= MAX_OUTPUT_CHARS:
        return text
    half = MAX_OUTPUT_CHARS // 2
    return f"{text[:half]}\n… [{len(text) - MAX_OUTPUT_CHARS} characters cut] …\n{text[-half:]}"


class BashArgs(ToolArgs):
    command: str = Field(description="The command to run.")
    timeout: float | SkipJsonSchema[None] = Field(
        default=None, description="Seconds before it is killed."
    )

    _timeout_not_null = field_validator("timeout", mode="before")(not_null)

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise ValueError("must be a positive number")
        return value


async def _bash(sandbox: Sandbox, args: BashArgs, call: Call) -> ToolOutput:
    limit = call.timeout if args.timeout is None else min(args.timeout, call.timeout)
    res = await sandbox.exec(args.command, timeout=limit)
    if res.oom_killed:
        raise ResourceLimitExceeded("the command went over the sandbox's memory limit")
    parts = [f"exit code: {res.exit_code}" + (" (timed out)" if res.timed_out else "")]
    if res.stdout:
        parts.append(f"stdout:\n{res.stdout}")
    if res.stderr:
        parts.append(f"stderr:\n{res.stderr}")
    return ToolOutput(clip("\n".join(parts)), is_error=res.exit_code != 0)


class PathArgs(ToolArgs):
    path: str


async def _read_file(sandbox: Sandbox, args: PathArgs, call: Call) -> ToolOutput:
    return ToolOutput(await read_text(sandbox, args.path))


async def read_text(sandbox: Sandbox, path: str) -> str:
    content = await sandbox.read_file(path, max_bytes=MAX_READ_BYTES)
    data = content.data[:MAX_READ_BYTES]  # the sandbox's sizes are not trusted
    if not content.truncated:
        return clip(data.decode("utf-8"))
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


class WriteArgs(ToolArgs):
    path: str
    content: str


async def _write_file(sandbox: Sandbox, args: WriteArgs, call: Call) -> ToolOutput:
    data = args.content.encode()
    await sandbox.write_file(args.path, data)
    return ToolOutput(f"wrote {len(data)} bytes to {args.path}")


class EditArgs(ToolArgs):
    path: str
    old_string: str
    new_string: str


async def _edit_file(sandbox: Sandbox, args: EditArgs, call: Call) -> ToolOutput:
    await sandbox.edit_file(args.path, args.old_string, args.new_string)
    return ToolOutput(f"edited {args.path}")


class ListArgs(ToolArgs):
    path: str = "."


async def _list_files(sandbox: Sandbox, args: ListArgs, call: Call) -> ToolOutput:
    files = await sandbox.list_files(args.path, max_entries=MAX_LIST_ENTRIES)
    suffix = f"\n… (first {MAX_LIST_ENTRIES} shown)" if len(files) >= MAX_LIST_ENTRIES else ""
    return ToolOutput("\n".join(files) + suffix if files else "(no files)")


BASH = Tool(
    "bash",
    "Run a bash command in the workspace (/workspace, a git clone of "
    "the run's repository) and return its exit code, stdout and stderr. No network "
    "unless the template allows it. To publish work, commit it and run "
    "`git push origin <branch>` (origin needs no network or credentials: Runyard "
    "forwards the branch upstream and the result says so; the default branch, "
    "deletions and force pushes are refused). Work left unpushed is kept as a patch.",
    BashArgs,
    "sandbox",
    _bash,
)
READ_FILE = Tool("read_file", "Read a text file of the workspace.", PathArgs, "sandbox", _read_file)
WRITE_FILE = Tool(
    "write_file",
    "Create or overwrite a file of the workspace with the given content.",
    WriteArgs,
    "sandbox",
    _write_file,
)
EDIT_FILE = Tool(
    "edit_file",
    "Replace one exact occurrence of old_string with new_string in a file.",
    EditArgs,
    "sandbox",
    _edit_file,
)
LIST_FILES = Tool(
    "list_files",
    "List the files under a directory of the workspace (recursively).",
    ListArgs,
    "sandbox",
    _list_files,
)
