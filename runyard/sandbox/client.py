"""The worker's end of a sandbox runner (``runner.py``): frames, deadlines, cancellation.

Nothing here trusts the runner: a frame over ``MAX_FRAME`` or that is not a JSON object
ends the connection, every string it returns is clipped again to the size asked for,
and every call has a deadline after which the caller kills the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from runyard.sandbox.runner import BOOT, HEADER, READY_FRAME, request_frame

MAX_FRAME = 4 * 1024 * 1024  # an exec result: two 100 kB streams, JSON-escaped at worst
START_TIMEOUT = 20.0
CLOSE_GRACE = 1.0  # seconds a runner has to exit once its stdin is closed

OutputCallback = Callable[[str, str], Awaitable[None] | None]


def boot(runner_dir: str | os.PathLike[str]) -> str:
    """The ``python -c`` program that starts ``runner.py`` found in ``runner_dir``."""
    return BOOT.format(frame=READY_FRAME, dir=str(runner_dir))


class RunnerGone(Exception):
    """The runner exited, broke the protocol or missed a deadline; it must be restarted."""


class RunnerFailed(Exception):
    """The runner answered with an error (a file that is not there, a bad path …)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class RunnerClient:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._streams: dict[int, OutputCallback] = {}
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        # Killed because its worker stops (``release.py``), not because the sandbox died:
        # a call it cuts off must run again on the next worker, not end as a tool error.
        self.released = False
        self._closing = False
        self._on_kill: list[Callable[[], None]] = []

    @classmethod
    async def start(
        cls,
        argv: list[str],
        *,
        after_spawn: Callable[[asyncio.subprocess.Process], Awaitable[Callable[[], None]]]
        | None = None,
        **kwargs: Any,
    ) -> RunnerClient:
        """Start the runner; ``after_spawn`` runs before it is used (to confine it, give
        it a network) and returns what to call when the runner is killed."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            **kwargs,
        )
        client = cls(proc)
        client._reader = asyncio.create_task(client._read_loop())
        try:
            if after_spawn is not None:
                client._on_kill.append(await after_spawn(proc))
            await asyncio.wait_for(asyncio.shield(client._ready), START_TIMEOUT)
        except Exception as exc:
            client.kill()
            raise RunnerGone(f"the sandbox process did not start: {exc or 'timed out'}") from exc
        return client

    @property
    def alive(self) -> bool:
        return not self.closed and self.proc.returncode is None

    async def call(
        self,
        op: str,
        args: dict[str, Any],
        *,
        deadline: float,
        on_output: OutputCallback | None = None,
    ) -> dict[str, Any]:
        """Send one request and wait at most ``deadline`` seconds for its answer."""
        if not self.alive:
            raise RunnerGone("the sandbox process has exited")
        rid = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        if on_output is not None:
            self._streams[rid] = on_output
        try:
            async with asyncio.timeout(deadline):
                await self._send({"id": rid, "op": op, **args})
                return await future
        except TimeoutError as exc:
            raise RunnerGone(f"the sandbox process did not answer within {deadline:.0f} s") from exc
        except asyncio.CancelledError:
            if self.alive:  # best effort: the runner kills the call's processes
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._send({"id": 0, "op": "cancel", "target": rid}), 1)
            raise
        finally:
            self._pending.pop(rid, None)
            self._streams.pop(rid, None)

    async def _send(self, obj: dict[str, Any]) -> None:
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing():
            raise RunnerGone("the sandbox process has exited")
        try:
            stdin.write(request_frame(obj))
            await stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise RunnerGone(f"the sandbox process has exited: {exc}") from exc

    async def _read_loop(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        error: Exception = RunnerGone("the sandbox process has exited")
        try:
            while True:
                (size,) = HEADER.unpack(await stdout.readexactly(HEADER.size))
                if size > MAX_FRAME:
                    error = RunnerGone(f"the sandbox process sent a {size}-byte frame")
                    return
                msg = json.loads(await stdout.readexactly(size))
                if not isinstance(msg, dict) or not isinstance(msg.get("id"), int):
                    error = RunnerGone("the sandbox process broke the protocol")
                    return
                await self._dispatch(msg)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except (ValueError, UnicodeDecodeError):
            error = RunnerGone("the sandbox process sent a frame that is not JSON")
        finally:
            self.closed = True
            if not self._ready.done():
                self._ready.set_exception(error)
                self._ready.exception()  # retrieved: start() reports it
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)
            if not self._closing:  # close() gives it time to exit, then kills it
                self.kill()

    async def _dispatch(self, msg: dict[str, Any]) -> None:
        rid = msg["id"]
        if rid == 0 and msg.get("ready"):
            if not self._ready.done():
                self._ready.set_result(None)
            return
        if "out" in msg:
            callback = self._streams.get(rid)
            data = msg.get("data")
            if callback is not None and isinstance(data, str):
                res = callback(str(msg["out"]), data[:MAX_FRAME])
                if res is not None:
                    await res
            return
        future = self._pending.get(rid)
        if future is None or future.done():
            return
        if isinstance(msg.get("ok"), dict):
            future.set_result(msg["ok"])
        else:
            raw = msg.get("error")
            err: dict[str, Any] = raw if isinstance(raw, dict) else {}
            future.set_exception(
                RunnerFailed(str(err.get("type", "Error")), str(err.get("message", ""))[:2000])
            )

    def kill(self) -> None:
        """Kill the runner and everything in its session (bubblewrap and the sandbox)."""
        self.closed = True
        while self._on_kill:
            self._on_kill.pop()()
        if self.proc.returncode is not None:
            return  # reaped: its pid may be another process's by now
        # Its own session's group (start_new_session): the runner leads it. Not also
        # proc.kill(): Popen polls (waitpid) before it signals and could reap the runner
        # just killed here, before asyncio's child watcher, which then reports 255.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    async def close(self) -> None:
        """Stop the runner. Told by the end of its stdin, it kills every process of its
        sandbox and exits, so bubblewrap and then this worker reap it (its CPU time counts
        in theirs, as operators' accounting expects). One that has not exited within
        ``CLOSE_GRACE`` (stuck, or busy) is killed. A call still running is cut off, as
        by a kill: an answer the runner sends while it ends its commands is not taken."""
        stdin = self.proc.stdin
        if not self.closed and self.proc.returncode is None and stdin is not None:
            self._closing = True
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(RunnerGone("the sandbox process has exited"))
            stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), CLOSE_GRACE)
        self.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
