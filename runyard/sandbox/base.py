"""The ``SandboxProvider`` protocol and the values that cross it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from runyard.errors import (
    RepositoryNotFound,
    ResourceLimitExceeded,
    SandboxError,
    SandboxUnavailable,
)

__all__ = [
    "RepositoryNotFound",
    "ResourceLimitExceeded",
    "SandboxError",
    "SandboxUnavailable",
]

SIZES: dict[str, dict[str, int]] = {
    "s": {"cpuMillis": 1000, "memoryMi": 2048, "diskMi": 5120},
    "m": {"cpuMillis": 2000, "memoryMi": 4096, "diskMi": 10240},
    "l": {"cpuMillis": 4000, "memoryMi": 8192, "diskMi": 20480},
    "xl": {"cpuMillis": 8000, "memoryMi": 16384, "diskMi": 40960},
}


class ToolError(Exception):
    """A tool call failed in a way the model should see as an ``is_error`` result: a
    missing file, a path outside the workspace, a FIFO, a sandbox process that stopped
    answering and was restarted."""


@dataclass(frozen=True)
class SandboxSpec:
    size: str = "m"
    repo_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # The template's script. Providers do not run it: the ``setup_sandbox`` activity does,
    # through ``exec``, so its output becomes ``sandbox.setup`` events on every provider.
    setup_script: str | None = None
    network: bool = False
    image: str | None = None  # the template's image (for E2B, the E2B template)

    @property
    def resources(self) -> dict[str, int]:
        return SIZES[self.size]


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False
    oom_killed: bool = False  # the sandbox's memory limit was hit


@dataclass(frozen=True)
class FileContent:
    data: bytes  # at most the ``max_bytes`` asked for
    size: int  # the file's whole size

    @property
    def truncated(self) -> bool:
        return self.size > len(self.data)


OutputCallback = Callable[[str, str], Awaitable[None] | None]


class Sandbox(Protocol):
    """One sandbox's tools. Every method runs inside the sandbox, never in the worker,
    and every one is bounded: output and reads by bytes, calls by a deadline. Paths are
    relative to the workspace (``/workspace/x``, ``./x`` and ``x`` are the same file).
    Errors the model should see are ``ToolError``; ``ResourceLimitExceeded`` ends the
    run; any other ``SandboxError`` means the sandbox cannot be reached.
    """

    id: str

    async def exec(
        self, command: str, *, timeout: float, on_output: OutputCallback | None = None
    ) -> ExecResult:
        """Run ``bash -c command`` in /workspace; every process it starts is killed when
        it returns. ``on_output(stream, text)`` gets the output's head as it comes."""
        ...

    async def read_file(self, path: str, *, max_bytes: int) -> FileContent:
        """The first ``max_bytes`` of a regular file (a FIFO or device is a ToolError)."""
        ...

    async def write_file(self, path: str, data: bytes) -> None: ...

    async def edit_file(self, path: str, old: str, new: str) -> None:
        """Replace the one occurrence of ``old`` (ToolError if it occurs 0 or 2+ times)."""
        ...

    async def list_files(self, path: str, *, max_entries: int) -> list[str]: ...


class SandboxProvider(Protocol):
    name: str

    async def create(self, sandbox_id: str, spec: SandboxSpec) -> Sandbox:
        """Create the sandbox, or return it if ``sandbox_id`` already exists (retries)."""
        ...

    async def get(self, sandbox_id: str) -> Sandbox:
        """Reconnect to an existing sandbox, also from a restarted worker."""
        ...

    async def destroy(self, sandbox_id: str) -> None:
        """Stop every process and delete the sandbox; a no-op if it is gone."""
        ...

    async def pause(self, sandbox_id: str) -> None:
        """Stop the sandbox from using CPU until resume; a no-op if it is gone or already
        paused."""
        ...

    async def resume(self, sandbox_id: str) -> None:
        """Let a paused sandbox run again; a no-op if it is gone or not paused."""
        ...

    async def list_ids(self) -> list[str]:
        """The ids of the sandboxes this provider holds."""
        ...
