"""``network: "full"``: egress through the sandbox's own network namespace.

bubblewrap always gives the sandbox a new network namespace. For a sandbox with network,
``slirp4netns`` (a user-mode TCP/IP stack, Debian package ``slirp4netns``) plugs a tap
device into it: 10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3. Connections leave
through the host's sockets, but ``--disable-host-loopback`` keeps the sandbox away from
the host's loopback services (Temporal, Postgres, the API); 127.0.0.1 inside is the
sandbox's own. slirp4netns runs outside the sandbox, dies with the worker and with the
sandbox's runner: its ``--exit-fd`` is a pipe only the worker holds, which the kernel
closes when the worker dies however it dies (no ``preexec_fn``: that would fork the
worker, see ``runner_start.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil

SLIRP = "slirp4netns"
RESOLV_CONF = "nameserver 10.0.2.3\n"
_TIMEOUT = 10.0


class NetworkError(Exception):
    pass


def slirp_path() -> str | None:
    return shutil.which(SLIRP)


async def read_fd(fd: int, limit: int = 65536, *, first: bool = False) -> bytes:
    """A pipe's content up to EOF, or its first chunk (``first``), bounded in bytes and
    time; closes ``fd``."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    try:
        async with asyncio.timeout(_TIMEOUT):
            data = b""
            while len(data) < limit and (chunk := await reader.read(limit - len(data))):
                data += chunk
                if first:
                    break
            return data
    except TimeoutError as exc:
        raise NetworkError("bubblewrap did not report the sandbox's pid") from exc
    finally:
        transport.close()


class Slirp:
    """One sandbox's slirp4netns; ``stop`` (or the worker's death) ends it."""

    def __init__(self, proc: asyncio.subprocess.Process, exit_fd: int) -> None:
        self.proc, self._exit_fd = proc, exit_fd

    @classmethod
    async def attach(cls, pid: int) -> Slirp:
        """Give the network namespace of ``pid`` (the sandbox's) a network."""
        slirp = slirp_path()
        if slirp is None:
            raise NetworkError("network access needs slirp4netns, which is not installed")
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                slirp,
                "--configure",
                "--mtu=65520",
                "--disable-host-loopback",
                "--ready-fd",
                str(ready_w),
                "--exit-fd",
                str(exit_r),
                str(pid),
                "tap0",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                pass_fds=(ready_w, exit_r),
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
        finally:
            os.close(ready_w)
            os.close(exit_r)
        sl = cls(proc, exit_w)
        try:
            if not await read_fd(ready_r, limit=16, first=True):
                raise NetworkError("slirp4netns exited before the network was up")
        except BaseException:
            sl.stop()
            raise
        return sl

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._exit_fd)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
