"""The ``SandboxProvider`` protocol and the values that cross it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from runyard.errors import ResourceLimitExceeded, SandboxError

__all__ = ["ResourceLimitExceeded", "SandboxError"]

SIZES: dict[str, dict[str, int]] = {
    "s": {"cpuMillis": 1000, "memoryMi": 2048, "diskMi": 5120},
    "m": {"cpuMillis": 2000, "memoryMi": 4096, "diskMi": 10240},
    "l": {"cpuMillis": 4000, "memoryMi": 8192, "diskMi": 20480},
    "xl": {"cpuMillis": 8000, "memoryMi": 16384, "diskMi": 40960},
}


@dataclass(frozen=True)
class SandboxSpec:
    size: str = "m"
    repo_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    setup_script: str | None = None
    network: bool = False

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


class Sandbox(Protocol):
    id: str

    async def exec(self, command: str, *, timeout: float) -> ExecResult: ...

    async def read_file(self, path: str) -> bytes: ...

    async def write_file(self, path: str, data: bytes) -> None: ...

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
