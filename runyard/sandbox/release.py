"""What a worker leaves of its local sandboxes when it stops: their files, nothing else.

A stopping worker kills its sandboxes' runners and every process in their cgroups (a
frozen cgroup is thawed first: a frozen process cannot die, and stayed behind in state D
under pid 1), removes the cgroups and unmounts the sandboxes' disks. The directories
and disk images stay, so runs stay durable: the next worker that takes one of their calls
mounts the image again and starts a new runner (``LocalSandboxProvider.runner``), as
after a machine restart; the reaper and ``destroy_sandbox`` remove the sandboxes of runs
that are over.

It is synchronous and quick (signals, cgroup files, umount(2)), so it can run from a
signal's timer thread just before the process ends (``cli/dev.py``'s worker) as well as
at the end of ``run_worker``.

``runyard dev`` owns its data dir, so once its worker is gone (stopped, or killed by a
second Ctrl-C before it could release) and before its next worker starts, it releases
whatever is left of every sandbox there (``release_leftovers``). A plain ``runyard worker``
never does: two workers may share a data dir.
"""

from __future__ import annotations

import ctypes
import errno
import os
import weakref
from collections.abc import Callable
from pathlib import Path

import structlog

from runyard.sandbox.cgroups import Cgroup
from runyard.sandbox.client import RunnerClient

log = structlog.get_logger(__name__)

_libc = ctypes.CDLL(None, use_errno=True)
_releasers: list[weakref.WeakMethod[Callable[[], int]]] = []


def on_worker_stop(release: Callable[[], int]) -> None:
    """Register a provider's ``release`` (a bound method, held weakly)."""
    _releasers.append(weakref.WeakMethod(release))


def release_local_sandboxes() -> int:
    """Release the sandboxes of every provider of this process; how many were released."""
    count = 0
    for ref in list(_releasers):
        release = ref()
        if release is None:
            _releasers.remove(ref)
            continue
        try:
            count += release()
        except Exception as exc:  # one line; the next start finds what is left
            log.warning("sandbox.release_failed", error=f"{type(exc).__name__}: {exc}")
    return count


def release_sandbox(root: Path, runner: RunnerClient | None, group: Cgroup | None) -> None:
    """Kill the sandbox's runner and processes, remove its cgroup, unmount its disk."""
    if runner is not None:
        runner.released = True  # before the kill: the call it cuts off reads it
        runner.kill()
    if group is not None:
        group.remove()  # thaws, kills what is left, removes the directories
    disk = root / "disk"
    # Never a lazy (detached) unmount: a mount still in use stays, so that the next runner
    # never mounts the image a second time beside a detached one.
    if os.path.ismount(disk) and _libc.umount2(bytes(disk), 0) != 0:
        reason = errno.errorcode.get(ctypes.get_errno(), "unknown")
        log.warning("sandbox.disk_left_mounted", sandbox_id=root.name, reason=reason)


def release_leftovers(sandboxes_dir: Path) -> int:
    """Release what is left of every sandbox under ``sandboxes_dir`` (processes, cgroups,
    disk mounts; the files stay) when no worker of this data dir runs; how many had any."""
    if not sandboxes_dir.is_dir():
        return 0
    count = 0
    for root in sorted(sandboxes_dir.iterdir()):
        if not root.name.startswith("sbx_") or not root.is_dir():
            continue
        group = Cgroup.find(root.name)
        if group is None and not os.path.ismount(root / "disk"):
            continue
        try:
            release_sandbox(root, None, group)
            count += 1
        except Exception as exc:  # one line; the others are still released
            log.warning("sandbox.release_failed", sandbox_id=root.name, error=f"{exc}")
    return count
