"""The sandbox runner: one long-lived process per sandbox that executes every tool.

The local provider starts it inside bubblewrap (or, with ``RUNYARD_SANDBOX_BWRAP=off``,
as a plain process) with the system Python: ``python3 -I -S -c BOOT WORKSPACE``. It must
stay standard-library only, and import little (see ``runner_procs.py``). It talks to the
worker over its stdin/stdout with frames of a 4-byte big-endian length and a body: a
request is a ``marshal``-ed dict (the runner trusts the worker; marshal is built in, json
would load ``re``), an answer is a JSON object (the worker trusts no runner):

    worker → runner  {"id": 7, "op": "exec", "command": "…", "timeout": 30, "cap": 100000}
                     {"id": 8, "op": "read", "path": "a.txt", "max_bytes": 131072, "offset": 0}
                     {"id": 9, "op": "write", "path": "a.txt", "data": "<base64>"}
                     {"id": 10, "op": "edit", "path": "a.txt", "old": "x", "new": "y"}
                     {"id": 11, "op": "list", "path": ".", "max_entries": 2000}
                     {"id": 12, "op": "cancel", "target": 7}
    runner → worker  {"id": 0, "ready": true}                  once, at start
                     {"id": 7, "out": "stdout", "data": "…"}   streamed output (head only)
                     {"id": 7, "ok": {…}} | {"id": 7, "error": {"type": "…", "message": "…"}}

Every call runs in its own thread. A command runs in its own process group; when its
call ends (exit, deadline, cancel) its group is killed, and so is everything it left:
inside bubblewrap the runner is pid 1 of the sandbox and, no other call running, kills
every other process (``sweep``); otherwise, as a child subreaper, every orphan that a
``setsid``/double fork reparented to it. Output is capped here, and a file is read in
chunks (``offset``) that each fit a frame; the worker checks again.
"""

from __future__ import annotations

import _thread
import binascii
import marshal
import os
import select
import stat
import struct
import sys
import time

TYPE_CHECKING = False  # typing itself is not imported: it costs the runner's start ~4 ms
if TYPE_CHECKING:
    from typing import IO, Any

if __package__:  # imported by the worker, as runyard.sandbox.runner
    from runyard.sandbox.runner_procs import (
        CALL_TAG,
        Capped,
        Command,
        _children,
        _kill,
        _kill_all_but_me,
        _killpg,
        _pidfd,
        _read_upto,
        _reap,
        _tag,
        close_on_exec,
        dumps,
        harden,
    )
else:  # inside the sandbox: /runyard/runner_procs.py beside it
    from runner_procs import (  # type: ignore[import-not-found,no-redef]
        CALL_TAG,
        Capped,
        Command,
        _children,
        _kill,
        _kill_all_but_me,
        _killpg,
        _pidfd,
        _read_upto,
        _reap,
        _tag,
        close_on_exec,
        dumps,
        harden,
    )

HEADER = struct.Struct(">I")
_READY = b'{"id": 0, "ready": true}'
READY_FRAME = HEADER.pack(len(_READY)) + _READY
# How the provider starts it: the ready frame goes out before the imports above, which
# then load while the worker goes on (the first call waits for them, provision does not).
BOOT = (
    "import os, sys; os.write(1, {frame!r}); sys.path.insert(0, {dir!r}); "
    "import runner; runner.main()"
)
MAX_REQUEST = 64 * 1024 * 1024  # write_file content is the biggest request
MAX_EDIT_BYTES = 8 * 1024 * 1024
MAX_LIST_BYTES = 1024 * 1024  # of names in a list answer (a frame is at most 4 MiB)


def encode(obj: dict[str, Any]) -> bytes:
    """An answer's frame. A file name that is not UTF-8 (a lone surrogate here) becomes
    U+FFFD, never bad bytes."""
    body = dumps(obj).encode("utf-8", "replace")
    return HEADER.pack(len(body)) + body


def request_frame(obj: dict[str, Any]) -> bytes:
    """A request's frame, made by the worker (format 4: read by any Python 3 runner)."""
    body = marshal.dumps(obj, 4)
    return HEADER.pack(len(body)) + body


class Runner:
    def __init__(self, workspace: str, out: IO[bytes]) -> None:
        self.workspace = os.path.realpath(workspace)
        self.out = out
        self.lock = _thread.allocate_lock()
        self.calls: dict[int, Command] = {}
        self.cancelled: set[int] = set()
        self.calls_lock = _thread.allocate_lock()

    # -- frames ------------------------------------------------------------------

    def send(self, obj: dict[str, Any]) -> None:
        data = encode(obj)
        with self.lock:
            self.out.write(data)
            self.out.flush()

    def serve(self, inp: IO[bytes]) -> None:
        """Answer requests until the worker goes away (the ready frame is already out)."""
        while True:
            head = inp.read(HEADER.size)
            if len(head) < HEADER.size:
                return  # the worker is gone
            (size,) = HEADER.unpack(head)
            if size > MAX_REQUEST:
                return
            body = inp.read(size)
            if len(body) < size:
                return
            req = marshal.loads(body)
            if req.get("op") == "cancel":
                self.cancel(int(req["target"]))
                continue
            _thread.start_new_thread(self.handle, (req,))

    def handle(self, req: dict[str, Any]) -> None:
        rid = int(req["id"])
        try:
            op = req["op"]
            if op == "exec":
                result = self.exec(rid, req["command"], float(req["timeout"]), int(req["cap"]))
            elif op == "read":
                offset = int(req.get("offset", 0))
                result = self.read(req["path"], int(req["max_bytes"]), offset)
            elif op == "write":
                result = self.write(req["path"], binascii.a2b_base64(req["data"]))
            elif op == "edit":
                result = self.edit(req["path"], req["old"], req["new"])
            elif op == "list":
                result = self.list(req["path"], int(req["max_entries"]), float(req["timeout"]))
            elif op == "ping":
                result = {}
            else:
                raise ValueError(f"unknown operation {op!r}")
            self.send({"id": rid, "ok": result})
        except Exception as exc:  # every failure is an answer, never a dead thread
            self.send({"id": rid, "error": {"type": type(exc).__name__, "message": str(exc)}})

    # -- commands ----------------------------------------------------------------

    def exec(self, rid: int, command: str, timeout: float, cap: int) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        env = {**os.environ, CALL_TAG: str(rid)}
        with self.calls_lock:  # a sweep never sees a command before it is registered
            proc = Command(["/bin/bash", "-c", command], env)  # cwd: the workspace
            self.calls[rid] = proc
        streams = {"stdout": Capped(cap), "stderr": Capped(cap)}
        assert proc.stdout is not None and proc.stderr is not None
        watched = {proc.stdout: "stdout", proc.stderr: "stderr"}
        pidfd = _pidfd(proc.pid)  # readable when the command exits: no polling
        if pidfd is not None:
            watched[pidfd] = "exit"
        poller = select.poll()
        for fd in watched:
            poller.register(fd, select.POLLIN)
        timed_out = False
        exited_at: float | None = None
        try:
            while True:
                now = time.monotonic()
                if rid in self.cancelled:
                    break
                if now >= deadline:
                    timed_out = True
                    break
                if proc.poll() is not None:
                    exited_at = exited_at or now
                    # Its output is read to the end, unless a background process holds
                    # the pipes open: that one is killed with the call anyway.
                    pipes = any(name != "exit" for name in watched.values())
                    if not pipes or now - exited_at > 0.2:
                        break
                wait = min(0.05 if pidfd is not None else 0.005, max(0.0, deadline - now))
                for fd, _ in poller.poll(wait * 1000):
                    name = watched[fd]
                    chunk = os.read(fd, 65536) if name != "exit" else b""
                    if not chunk:
                        poller.unregister(fd)
                        del watched[fd]
                        continue
                    streamed = streams[name].add(chunk)
                    if streamed:
                        self.send({"id": rid, "out": name, "data": streamed})
        finally:
            if pidfd is not None:
                os.close(pidfd)
            self.end_call(rid, proc)
        code = proc.returncode if proc.returncode is not None else -9
        return {
            "exit_code": code,
            "stdout": streams["stdout"].text(),
            "stderr": streams["stderr"].text(),
            "timed_out": timed_out,
            "cancelled": rid in self.cancelled,
        }

    def cancel(self, rid: int) -> None:
        self.cancelled.add(rid)

    def end_call(self, rid: int, proc: Command) -> None:
        _killpg(proc.pid)
        proc.wait()
        proc.close()
        with self.calls_lock:
            self.calls.pop(rid, None)
        self.sweep()

    def sweep(self) -> None:
        """Kill the processes that ended calls left behind.

        As pid 1 of the sandbox (bubblewrap's ``--as-pid-1``) with no other call running,
        every process but this one is killed (``kill(-1)``, again until ``/proc`` holds
        only pid 1): nothing a command did (``setsid``, a double fork, a cleared or forged
        environment) keeps a process alive past its call. While another call runs, or
        unisolated (not pid 1: ``kill(-1)`` would reach the worker's user), the children of
        this runner whose tag is not a running call's are killed instead; a process that
        forged the tag of a running call then dies when that call ends.
        """
        me = os.getpid()
        if me == 1:
            with self.calls_lock:  # no command starts while the sandbox is emptied
                if not self.calls:
                    _kill_all_but_me()
                    return
        for _ in range(400):
            found = False
            with self.calls_lock:
                active = {str(r) for r in self.calls}
                roots = {p.pid for p in self.calls.values()}
                for pid, state in _children(me):
                    if pid in roots:
                        continue
                    if state == "Z":
                        _reap(pid)
                        continue
                    if _tag(pid) not in active:
                        found = True
                        _killpg(pid)
                        _kill(pid)
            if not found:
                return
            time.sleep(0.005)

    def stop(self) -> None:
        """The worker is gone: every command and what it left behind is killed."""
        with self.calls_lock:
            for proc in self.calls.values():
                _killpg(proc.pid)
            self.calls.clear()
        self.sweep()

    # -- files -------------------------------------------------------------------

    def resolve(self, path: str) -> str:
        p = path.strip() or "."
        if p == "/workspace" or p.startswith("/workspace/"):
            p = p.removeprefix("/workspace").lstrip("/") or "."
        if os.path.isabs(p) or "\x00" in p:
            raise PermissionError(f"{path}: outside the workspace")
        full = os.path.realpath(os.path.join(self.workspace, p))
        if os.path.commonpath([self.workspace, full]) != self.workspace:
            raise PermissionError(f"{path}: outside the workspace")
        return full

    def _open_regular(self, path: str, flags: int) -> tuple[int, os.stat_result]:
        full = self.resolve(path)
        # O_NONBLOCK: opening a FIFO returns at once; the fstat then refuses it.
        fd = os.open(full, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(f"{path} is a directory")
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
            raise NotARegularFile(f"{path} is {kind}, not a regular file")
        return fd, st

    def read(self, path: str, max_bytes: int, offset: int = 0) -> dict[str, Any]:
        """Up to ``max_bytes`` from ``offset`` (a large file is read in several calls: one
        answer is one frame); ``version`` tells the caller the file did not change."""
        fd, st = self._open_regular(path, os.O_RDONLY)
        try:
            if offset:
                os.lseek(fd, offset, os.SEEK_SET)
            data = _read_upto(fd, max_bytes)
        finally:
            os.close(fd)
        return {
            "data": binascii.b2a_base64(data, newline=False).decode(),
            "size": st.st_size,
            "version": f"{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}:{st.st_size}",
        }

    def write(self, path: str, data: bytes) -> dict[str, Any]:
        full = self.resolve(path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        fd, _ = self._open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return {"written": len(data)}

    def edit(self, path: str, old: str, new: str) -> dict[str, Any]:
        fd, st = self._open_regular(path, os.O_RDONLY)
        try:
            if st.st_size > MAX_EDIT_BYTES:
                raise ValueError(f"{path} is {st.st_size} bytes; edit_file edits files up to 8 MiB")
            text = _read_upto(fd, MAX_EDIT_BYTES).decode("utf-8")
        finally:
            os.close(fd)
        count = text.count(old) if old else 0
        if count != 1:
            raise ValueError(
                f"old_string must occur exactly once in {path}; it occurs {count} times"
            )
        self.write(path, text.replace(old, new, 1).encode("utf-8", "surrogatepass"))
        return {}

    def list(self, path: str, max_entries: int, timeout: float) -> dict[str, Any]:
        base = self.resolve(path)
        deadline = time.monotonic() + timeout
        found: list[str] = []
        size = 0  # the answer is one frame: long names stop the list at MAX_LIST_BYTES
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != ".git")
            for name in sorted(filenames):
                found.append(os.path.relpath(os.path.join(dirpath, name), self.workspace))
                # Counted as the frame holds it: a control character is 6 bytes ("\u0001").
                size += len(dumps(found[-1]).encode("utf-8", "replace"))
                size += 2
                if (
                    len(found) >= max_entries
                    or size >= MAX_LIST_BYTES
                    or time.monotonic() > deadline
                ):
                    return {"files": found}
        return {"files": found}


class NotARegularFile(Exception):
    pass


def main() -> None:
    workspace = sys.argv[-1]
    close_on_exec()
    os.chdir(workspace)  # the commands' working directory
    harden()
    # The protocol's pipes move to private descriptors; nothing else may write on them.
    stdin, stdout = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    runner = Runner(workspace, stdout)
    try:
        runner.serve(stdin)
    finally:
        runner.stop()


if __name__ == "__main__":
    os.write(1, READY_FRAME)
    main()
