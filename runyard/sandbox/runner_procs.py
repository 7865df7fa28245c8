"""The sandbox runner's processes and pipes: output capping, ``/proc`` scans, kills.

Standard library only, like ``runner.py`` beside it: inside a sandbox both are bound at
``/runyard`` and run by the system Python.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time

TYPE_CHECKING = False  # typing itself is not imported: it costs the runner's start ~4 ms
if TYPE_CHECKING:
    from typing import Any

CALL_TAG = "SANDBOX_CALL_ID"  # set in every command's environment: which call made a process


class Capped:
    """A stream's output: the first cap/2 bytes (streamed as they come) and the last cap/2."""

    def __init__(self, cap: int) -> None:
        self.half = cap // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> str:
        self.total += len(chunk)
        room = self.half - len(self.head)
        streamed = chunk[:room] if room > 0 else b""
        self.head += streamed
        rest = chunk[len(streamed) :]
        if rest:
            self.tail += rest
            del self.tail[: max(0, len(self.tail) - self.half)]
        return streamed.decode("utf-8", "replace")

    def text(self) -> str:
        cut = self.total - len(self.head) - len(self.tail)
        data = bytes(self.head)
        if cut > 0:
            data += f"\n… [{cut} bytes cut] …\n".encode()
        return (data + bytes(self.tail)).decode("utf-8", "replace")


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # Python < 3.9 or Linux < 5.3: poll instead
        return None


def _read_upto(fd: int, limit: int) -> bytes:
    parts, left = [], limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _children(parent: int) -> list[tuple[int, str]]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            out.append((int(name), fields[0].decode()))
    return out


def _tag(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read(1 << 20).split(b"\0")
    except OSError:
        return None
    prefix = CALL_TAG.encode() + b"="
    for item in env:
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def _kill_all_but_me() -> None:
    """Only as pid 1 of the sandbox's pid namespace: SIGKILL every other process in it and
    reap them. A fork racing the first ``kill(-1)`` fails (its parent has a fatal signal
    pending) or is caught by the next; the process count is capped by the cgroup."""
    for _ in range(400):
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:  # ESRCH: no other process
            pass
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        if not [n for n in os.listdir("/proc") if n.isdigit() and n != "1"]:
            return
        time.sleep(0.002)


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except OSError:
        pass


def _prctl(option: int, value: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _ignore(signum: int, frame: Any) -> None:
    pass
