"""The sandbox runner's processes and pipes: spawning, output capping, ``/proc`` scans,
kills; and the JSON of its answers.

Standard library only, like ``runner.py`` beside it: inside a sandbox both are bound at
``/runyard`` and run by the system Python. Every sandbox starts one runner, so what they
import is paid on every run: only modules written in C and ``os`` (and ``ctypes``, for
``prctl``). ``subprocess``, ``threading``, ``selectors``, ``json`` and ``signal`` would
load ``re``, ``enum``, ``functools`` and ``locale`` with them: 17 ms of CPU per sandbox,
against 9 ms for the interpreter itself (``python3 -I -S -c "import …"``, 200 starts).
"""

from __future__ import annotations

import ctypes
import os
import time

TYPE_CHECKING = False  # typing itself is not imported: it costs the runner's start ~4 ms
if TYPE_CHECKING:
    import signal
    from typing import Any
else:
    try:  # signal.py only wraps this C module's constants in enums (and loads enum)
        import _signal as signal
    except ImportError:  # not CPython
        import signal
try:  # the C half of json, which json.encoder wraps; json itself loads re
    from _json import encode_basestring as _quote
except ImportError:  # not CPython
    from json.encoder import encode_basestring as _quote

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


def dumps(obj: Any) -> str:
    """The JSON of an answer (dicts, lists, strings, numbers, booleans, None): what
    ``json.dumps(obj, ensure_ascii=False)`` writes. A lone surrogate stays one here;
    ``runner.encode`` makes it U+FFFD."""
    if isinstance(obj, str):
        return _quote(obj)
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        return int.__repr__(obj)
    if isinstance(obj, float):
        text = float.__repr__(obj)
        return _NON_FINITE.get(text, text)
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{_quote(str(k))}: {dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(dumps(v) for v in obj) + "]"
    raise TypeError(f"{type(obj).__name__} is not JSON")


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


class Command:
    """A command in its own session with its stdout and stderr on pipes: what
    ``subprocess.Popen(argv, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, env=env,
    start_new_session=True)`` did, in the runner's working directory (the workspace).

    ``posix_spawn`` (vfork and exec) never copies the runner. Every descriptor of the
    runner is close-on-exec (``main`` makes sure of it), so the command gets only these
    three. The signals Python ignores (SIGPIPE, SIGXFSZ) are back to their defaults in it.
    """

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.pid = os.posix_spawn(
                argv[0],
                argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, err_w, 2),
                ],
                setsid=True,
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            )
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        self.stdout: int | None = out_r
        self.stderr: int | None = err_r
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """Its exit code (``-signal`` if a signal killed it), or None while it runs."""
        if self.returncode is None:
            self._wait(os.WNOHANG)
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            self._wait(0)
        return self.returncode

    def _wait(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # reaped already (a sweep): its code is lost
            self.returncode = -signal.SIGKILL
            return
        if pid:
            self.returncode = os.waitstatus_to_exitcode(status)

    def close(self) -> None:
        for fd in (self.stdout, self.stderr):
            if fd is not None:
                os.close(fd)
        self.stdout = self.stderr = None


def close_on_exec() -> None:
    """Mark every descriptor above 2 close-on-exec: one the runner inherited must not
    reach a command (``Command`` does not close descriptors the way Popen did)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc mounted: every possible one
        fds = list(range(3, os.sysconf("SC_OPEN_MAX")))
    for fd in fds:
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:  # not open (the listing's own descriptor, closed by now)
                pass


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


_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_CHILD_SUBREAPER = 1, 4, 36


def harden() -> None:
    """What the runner makes of itself before it serves."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)  # orphans of commands come back here to be killed
    _prctl(_PR_SET_DUMPABLE, 0)  # commands cannot open /proc/<runner>/fd/* nor ptrace it
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # As pid 1 the kernel only delivers, from inside, the signals it has a handler for:
    # Python's SIGINT handler would let a command stop the runner. A no-op one instead
    # (a handler, unlike SIG_IGN, is not inherited by the commands it execs).
    signal.signal(signal.SIGINT, _ignore)


def _prctl(option: int, value: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _ignore(signum: int, frame: Any) -> None:
    pass
