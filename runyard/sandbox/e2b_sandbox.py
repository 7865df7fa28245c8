"""One E2B sandbox as the tools see it: every call goes through the official e2b SDK to the
sandbox's daemon (envd), which runs it inside the E2B microVM.

The same bounds as the local sandbox: a command's output is kept to its head and tail
(``OUTPUT_CAP``), only the head streams to ``on_output``; a file is read only when envd
says it is a regular file, and only up to ``max_bytes`` of it crosses the network; every
call has a deadline. Errors the model should see are ``ToolError``; a sandbox E2B no
longer has (killed, timed out, paused) or cannot reach is a ``SandboxError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import posixpath
import shlex
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from e2b import AsyncSandbox, CommandExitException, FileType
from e2b.exceptions import (
    AuthenticationException,
    FileNotFoundException,
    NotFoundException,
    RateLimitException,
    SandboxException,
    ServiceBusyException,
    TimeoutException,
)

from runyard.sandbox.base import (
    ExecResult,
    FileContent,
    OutputCallback,
    SandboxError,
    SandboxUnavailable,
    ToolError,
)
from runyard.sandbox.local_sandbox import (
    EXEC_GRACE,
    FILE_DEADLINE,
    OUTPUT_CAP,
    READ_DEADLINE,
    _clip,
)
from runyard.sandbox.runner import MAX_EDIT_BYTES

if TYPE_CHECKING:
    from e2b.sandbox_async.commands.command_handle import AsyncCommandHandle

WORKSPACE = "/workspace"
USER = "root"  # the microVM is the isolation boundary; the agent owns all of it
_T = TypeVar("_T")
# What the SDK raises for a failed call (AuthenticationException and ServiceBusyException
# are not SandboxExceptions).
SDK_ERRORS = (SandboxException, AuthenticationException, ServiceBusyException)


def workspace_path(path: str) -> str:
    """``/workspace/x``, ``./x`` and ``x`` are the same file; nothing outside /workspace."""
    p = path.strip() or "."
    if p == WORKSPACE or p.startswith(WORKSPACE + "/"):
        p = p.removeprefix(WORKSPACE).lstrip("/") or "."
    if p.startswith("/") or "\0" in p:
        raise ToolError(f"{path}: outside the workspace")
    full = posixpath.normpath(posixpath.join(WORKSPACE, p))
    if full != WORKSPACE and not full.startswith(WORKSPACE + "/"):
        raise ToolError(f"{path}: outside the workspace")
    return full


def sdk_error(exc: Exception, what: str) -> Exception:
    """The Runyard error for an SDK failure that is not about one file."""
    if isinstance(exc, AuthenticationException):  # retrying cannot help
        return SandboxUnavailable(f"E2B refused the API key while {what}: {exc}")
    if isinstance(exc, RateLimitException | ServiceBusyException):
        return SandboxError(f"E2B is busy ({what}): {exc}")
    if isinstance(exc, NotFoundException | TimeoutException):
        return SandboxError(f"the E2B sandbox is gone or unreachable ({what}): {exc}")
    return SandboxError(f"E2B failed while {what}: {exc}")


async def guarded(call: Callable[[], Awaitable[_T]], what: str, path: str | None = None) -> _T:
    """Run one SDK call; a missing file is a ToolError, any other failure a SandboxError."""
    try:
        return await call()
    except FileNotFoundException as exc:
        raise ToolError(f"{path or what}: no such file or directory") from exc
    except SDK_ERRORS as exc:
        raise sdk_error(exc, what) from exc


class _Capture:
    """One stream's output: the first cap/2 characters (streamed as they come), the last
    cap/2, and how many were cut in between."""

    def __init__(self, stream: str, on_output: OutputCallback | None) -> None:
        self.stream = stream
        self.on_output = on_output
        self.half = OUTPUT_CAP // 2
        self.head = ""
        self.tail = ""
        self.total = 0

    async def add(self, text: str) -> None:
        self.total += len(text)
        room = self.half - len(self.head)
        streamed = text[:room] if room > 0 else ""
        self.head += streamed
        rest = text[len(streamed) :]
        if rest:
            self.tail = (self.tail + rest)[-self.half :]
        if streamed and self.on_output is not None:
            result = self.on_output(self.stream, streamed)
            if inspect.isawaitable(result):
                await result

    def text(self) -> str:
        cut = self.total - len(self.head) - len(self.tail)
        middle = f"\n… [{cut} characters cut] …\n" if cut > 0 else ""
        return self.head + middle + self.tail


def _wrapped(command: str) -> str:
    """``bash -c command`` in its own session, killed whole when it returns or is stopped:
    nothing it started outlives the call."""
    return (
        f"setsid bash -c {shlex.quote(command)} </dev/null & p=$!\n"
        "trap 'kill -9 -- -$p 2>/dev/null' EXIT\n"
        "trap 'kill -9 -- -$p 2>/dev/null; exit 137' TERM\n"
        "{ wait $p; } 2>/dev/null"
    )


class E2BSandbox:
    def __init__(self, sandbox_id: str, sdk: AsyncSandbox) -> None:
        self.id = sandbox_id
        self.sdk = sdk

    @property
    def e2b_id(self) -> str:
        return str(self.sdk.sandbox_id)

    async def exec(
        self, command: str, *, timeout: float, on_output: OutputCallback | None = None
    ) -> ExecResult:
        out, err = _Capture("stdout", on_output), _Capture("stderr", on_output)
        starting = asyncio.ensure_future(
            guarded(
                lambda: self.sdk.commands.run(
                    _wrapped(command),
                    background=True,
                    cwd=WORKSPACE,
                    user=USER,
                    on_stdout=out.add,
                    on_stderr=err.add,
                    timeout=timeout + EXEC_GRACE,
                    request_timeout=FILE_DEADLINE,
                    retain_output=False,
                ),
                "starting a command",
            )
        )
        try:
            handle: AsyncCommandHandle[Any] = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # Cancelled while starting: the command may run already (it outlives its
            # stream), so wait for its handle and stop it.
            with contextlib.suppress(Exception):
                started = await asyncio.wait_for(starting, FILE_DEADLINE)
                stopping = self._stop(started, asyncio.ensure_future(started.wait()))
                await asyncio.wait_for(stopping, 15)
            raise
        waiter = asyncio.ensure_future(handle.wait())
        timed_out = False
        try:
            done, _ = await asyncio.wait({waiter}, timeout=timeout)
            if not done:
                timed_out = True
                await self._stop(handle, waiter)
                if waiter.done() and not waiter.cancelled():
                    waiter.exception()  # retrieved: the command was killed, as asked
            code = int(waiter.result().exit_code) if done else -9
        except CommandExitException as exc:
            code = -9 if timed_out else int(exc.exit_code)
        except SDK_ERRORS as exc:
            raise sdk_error(exc, "running a command") from exc
        except asyncio.CancelledError:  # the activity was cancelled: so is the command
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._stop(handle, waiter)), 15)
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
                await handle.disconnect()
        return ExecResult(
            code,
            _clip(out.text(), OUTPUT_CAP + 100),
            _clip(err.text(), OUTPUT_CAP + 100),
            timed_out=timed_out,
        )

    async def _stop(self, handle: AsyncCommandHandle[Any], waiter: asyncio.Future[Any]) -> None:
        """A command past its timeout: TERM its wrapper (which kills the command's whole
        session), then SIGKILL the wrapper if it is still there."""
        try:
            await self.sdk.commands.run(
                f"kill -TERM {int(handle.pid)} 2>/dev/null || true",
                user=USER,
                timeout=FILE_DEADLINE,
                request_timeout=FILE_DEADLINE,
            )
        except SDK_ERRORS as exc:
            raise sdk_error(exc, "stopping a command past its timeout") from exc
        done, _ = await asyncio.wait({waiter}, timeout=5)
        if not done:
            with contextlib.suppress(*SDK_ERRORS):
                await handle.kill()

    async def _regular_file(self, path: str, full: str) -> int:
        """The size of the regular file ``full`` (a ToolError for anything else)."""
        info = await guarded(
            lambda: self.sdk.files.get_info(full, user=USER, request_timeout=FILE_DEADLINE),
            "reading a file's type",
            path,
        )
        if info.type == FileType.DIR:
            raise ToolError(f"{path} is a directory")
        if info.type != FileType.FILE:
            raise ToolError(f"{path} is not a regular file (a FIFO, device, socket or link)")
        return int(info.size)

    async def read_file(self, path: str, *, max_bytes: int) -> FileContent:
        full = workspace_path(path)
        size = await self._regular_file(path, full)
        data = bytearray()

        async def download() -> None:
            reader = await self.sdk.files.read(
                full, format="stream", user=USER, request_timeout=FILE_DEADLINE
            )
            try:
                async for chunk in reader:
                    data.extend(chunk)
                    if len(data) > max_bytes:
                        break  # one byte past the cap says there is more
            finally:
                await reader.aclose()

        try:  # streamed, bounded in bytes (above) and in time like the local provider's
            async with asyncio.timeout(READ_DEADLINE):
                await guarded(download, "reading a file", path)
        except TimeoutError as exc:
            raise ToolError(
                f"reading {path} took more than {READ_DEADLINE:.0f} s ({len(data)} bytes read)"
            ) from exc
        return FileContent(bytes(data[:max_bytes]), max(size, len(data)))

    async def write_file(self, path: str, data: bytes) -> None:
        full = workspace_path(path)
        await guarded(
            lambda: self.sdk.files.write(
                full, data, user=USER, request_timeout=FILE_DEADLINE, use_octet_stream=True
            ),
            "writing a file",
            path,
        )

    async def edit_file(self, path: str, old: str, new: str) -> None:
        full = workspace_path(path)
        size = await self._regular_file(path, full)
        if size > MAX_EDIT_BYTES:
            raise ToolError(f"{path} is {size} bytes; edit_file edits files up to 8 MiB")
        content = await self.read_file(path, max_bytes=MAX_EDIT_BYTES)
        if content.truncated:
            raise ToolError(f"{path} is more than 8 MiB; edit_file edits files up to 8 MiB")
        try:
            text = content.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ToolError(f"{path} is not UTF-8 text: {exc}") from exc
        count = text.count(old) if old else 0
        if count != 1:
            raise ToolError(
                f"old_string must occur exactly once in {path}; it occurs {count} times"
            )
        await self.write_file(path, text.replace(old, new, 1).encode("utf-8", "surrogatepass"))

    async def list_files(self, path: str, *, max_entries: int) -> list[str]:
        full = workspace_path(path)
        # find, not the SDK's recursive list: its answer has no bound in size.
        res = await self.exec(
            f"set -o pipefail; cd {WORKSPACE} && timeout {int(FILE_DEADLINE / 2)} find "
            f"{shlex.quote(posixpath.relpath(full, WORKSPACE))} -name .git -prune -o "
            f"\\( -type f -o -type l \\) -print | head -n {int(max_entries)}",
            timeout=FILE_DEADLINE,
        )
        if res.exit_code != 0 and not res.stdout:
            raise ToolError(f"{path}: {res.stderr.strip()[-500:] or 'cannot be listed'}")
        text = res.stdout
        if (cut := text.find("\n… [")) != -1:  # over the output cap: the whole lines before
            text = text[:cut].rsplit("\n", 1)[0] if "\n" in text[:cut] else ""
        files = [posixpath.normpath(line) for line in text.splitlines() if line]
        return sorted(f[:4096] for f in files[:max_entries])
