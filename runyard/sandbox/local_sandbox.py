"""One local sandbox as the tools see it: every call goes to the sandbox's runner.

Nothing here opens a file of the workspace: the runner does, inside the sandbox. What it
answers is checked again (sizes clipped, types checked), and the sandbox's limits are
read after each call (OOM kills from the cgroup, free space of the workspace's disk).
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any, Protocol

from runyard.sandbox.base import (
    ExecResult,
    FileContent,
    OutputCallback,
    ResourceLimitExceeded,
    SandboxError,
    SandboxSpec,
    ToolError,
)
from runyard.sandbox.cgroups import Cgroup
from runyard.sandbox.client import RunnerClient, RunnerFailed, RunnerGone
from runyard.sandbox.disk import free_space

OUTPUT_CAP = 100_000  # bytes of stdout/stderr kept per command (head and tail)
EXEC_GRACE = 10.0  # seconds past a command's timeout before its runner counts as stuck
FILE_DEADLINE = 30.0  # seconds a file operation may take before the runner counts as stuck
READ_CHUNK = 1024 * 1024  # bytes of a file per runner answer (base64: 1.4 MB < MAX_FRAME)
READ_DEADLINE = 120.0  # seconds a whole read_file may take (100 MiB take about 1 s)
DISK_FULL_BYTES = 1024 * 1024  # less free than this on the workspace: the disk is full
DISK_FULL_INODES = 64  # fewer free inodes than this: full too (no file can be made)


def _clip(text: Any, cap: int) -> str:
    """The runner's output, clipped again here: its sizes are not trusted."""
    s = text if isinstance(text, str) else ""
    if len(s) <= cap:
        return s
    half = cap // 2
    return f"{s[:half]}\n… [{len(s) - cap} characters cut] …\n{s[-half:]}"


class RunnerHost(Protocol):
    """What a sandbox needs of its provider: its runner, its cgroup, and whether it was
    destroyed (``LocalSandboxProvider`` is one; this module does not import it)."""

    destroyed: set[str]

    async def runner(self, sandbox: LocalSandbox) -> RunnerClient: ...

    def cgroup(self, sandbox: LocalSandbox) -> Cgroup | None: ...

    async def stop_runner(self, sandbox_id: str, runner: RunnerClient | None = None) -> None: ...


class LocalSandbox:
    def __init__(self, provider: RunnerHost, sandbox_id: str, root: Path) -> None:
        self.id = sandbox_id
        self._provider = provider
        self.root = root
        self.workspace = root / "disk" / "workspace"
        meta = json.loads((root / "meta.json").read_text())
        self.loop_disk = meta.get("disk") == "loop"
        self.spec = SandboxSpec(
            size=meta["size"], env=meta.get("env", {}), network=meta.get("network", False)
        )

    async def _call(
        self,
        op: str,
        args: dict[str, Any],
        *,
        deadline: float,
        on_output: OutputCallback | None = None,
    ) -> dict[str, Any]:
        runner = await self._provider.runner(self)
        group = self._provider.cgroup(self)
        ooms = group.oom_kills() if group else 0
        try:
            return await runner.call(op, args, deadline=deadline, on_output=on_output)
        except RunnerGone as exc:
            if runner.released:  # the worker stops: the activity fails, retryable, and
                # Temporal runs the call again on the next worker (at-least-once)
                raise SandboxError(
                    f"this worker stopped during the call and released sandbox {self.id}; "
                    "the call runs again on the next worker"
                ) from exc
            await self._provider.stop_runner(self.id, runner)
            if self.id in self._provider.destroyed:
                raise SandboxError(f"sandbox {self.id} was destroyed") from exc
            if group is not None and group.oom_kills() > ooms:
                raise ResourceLimitExceeded(
                    "the sandbox went over its memory limit "
                    f"({self.spec.resources['memoryMi']} MiB)"
                ) from exc
            self.check_disk()
            raise ToolError(f"{exc}; the sandbox process was restarted") from exc
        except RunnerFailed as exc:
            self.check_disk()
            raise ToolError(f"{exc.kind}: {exc}") from exc

    def check_disk(self) -> None:
        if not self.loop_disk:
            return
        free = free_space(self.workspace)
        if free is None:
            return
        free_bytes, free_inodes = free
        if free_bytes < DISK_FULL_BYTES:
            raise ResourceLimitExceeded(
                f"the sandbox's disk is full ({self.spec.resources['diskMi']} MiB)"
            )
        if free_inodes < DISK_FULL_INODES:
            raise ResourceLimitExceeded(
                f"the sandbox's disk is full: no free inodes left ({self.spec.resources['diskMi']}"
                " MiB)"
            )

    async def exec(
        self, command: str, *, timeout: float, on_output: OutputCallback | None = None
    ) -> ExecResult:
        group = self._provider.cgroup(self)
        ooms = group.oom_kills() if group else 0
        res = await self._call(
            "exec",
            {"command": command, "timeout": timeout, "cap": OUTPUT_CAP},
            deadline=timeout + EXEC_GRACE,
            on_output=on_output,
        )
        oom = group is not None and group.oom_kills() > ooms
        self.check_disk()
        code = res.get("exit_code")
        return ExecResult(
            code if isinstance(code, int) else -1,
            _clip(res.get("stdout"), OUTPUT_CAP + 100),
            _clip(res.get("stderr"), OUTPUT_CAP + 100),
            timed_out=bool(res.get("timed_out")),
            oom_killed=oom,
        )

    async def read_file(self, path: str, *, max_bytes: int) -> FileContent:
        """The file in chunks of ``READ_CHUNK`` (one runner answer is one frame, at most
        ``MAX_FRAME``), each a call with its own deadline, all within ``READ_DEADLINE``; a
        file that changes between two chunks is a ToolError."""
        parts: list[bytes] = []
        got, size, version = 0, 0, None
        try:
            async with asyncio.timeout(READ_DEADLINE):
                while True:
                    want = min(READ_CHUNK, max_bytes - got)
                    args = {"path": path, "max_bytes": want, "offset": got}
                    res = await self._call("read", args, deadline=FILE_DEADLINE)
                    raw = res.get("data")
                    if not isinstance(raw, str) or len(raw) > (want + 2) * 4 // 3 + 4:
                        raise ToolError("the sandbox process answered more than was asked for")
                    chunk = base64.b64decode(raw)[:want]
                    if version is not None and res.get("version") != version:
                        raise ToolError(f"{path} changed while it was read; read it again")
                    version = res.get("version")
                    reported = res.get("size")
                    size = reported if isinstance(reported, int) else got + len(chunk)
                    parts.append(chunk)
                    got += len(chunk)
                    if not chunk or got >= max_bytes or got >= size:
                        break
        except TimeoutError as exc:
            raise ToolError(
                f"reading {path} took more than {READ_DEADLINE:.0f} s ({got} bytes read)"
            ) from exc
        data = b"".join(parts)
        return FileContent(data, max(size, len(data)))

    async def write_file(self, path: str, data: bytes) -> None:
        await self._call(
            "write",
            {"path": path, "data": base64.b64encode(data).decode()},
            deadline=FILE_DEADLINE,
        )
        self.check_disk()

    async def edit_file(self, path: str, old: str, new: str) -> None:
        await self._call("edit", {"path": path, "old": old, "new": new}, deadline=FILE_DEADLINE)
        self.check_disk()

    async def list_files(self, path: str, *, max_entries: int) -> list[str]:
        res = await self._call(
            "list",
            {"path": path, "max_entries": max_entries, "timeout": FILE_DEADLINE / 2},
            deadline=FILE_DEADLINE,
        )
        files = res.get("files")
        if not isinstance(files, list):
            return []
        return [f[:4096] for f in files[:max_entries] if isinstance(f, str)]
