"""How the local provider starts a sandbox's runner: inside bubblewrap (or unisolated),
then put into the sandbox's cgroup and limits, then given its network.

The worker is never forked for it. A ``preexec_fn`` (run in the child between fork and
exec) would make Python fork instead of vfork, and a fork copies the worker's page
tables: 5 ms of CPU per sandbox at 150 MB of memory, 10 ms at 300. Instead the runner is
spawned plainly and confined from here, by pid, before it gets its first request: until
then only its own start-up (Python and ``runner.py``) runs, and it starts no process
before a request asks it to, so every process of the agent starts confined.

- the cgroup (memory, CPU, process count): its pid is written into ``cgroup.procs``;
- rlimits (``prlimit``): the file size of the disk, no core dumps, and the address space
  of the size's memory where there is no cgroup;
- the umask 022 (the worker's is 077, ``runyard/datadir.py``): the agent's files are usual;
- death with the worker: bubblewrap's ``--die-with-parent``; unisolated, the runner's own
  ``PR_SET_PDEATHSIG`` and the end of its stdin.

Inside bubblewrap the runner is bubblewrap's child; its pid comes from ``--info-fd``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
from collections.abc import Callable
from typing import Any

from runyard.sandbox.cgroups import Cgroup
from runyard.sandbox.client import RunnerClient, boot
from runyard.sandbox.isolation import bwrap_argv, make_scratch, sandbox_env, system_python
from runyard.sandbox.local_sandbox import LocalSandbox
from runyard.sandbox.network import RESOLV_CONF, NetworkError, Slirp, read_fd
from runyard.sandbox.runner_code import RUNNER, RunnerBytecode

UMASK = 0o022


def rlimits(resources: dict[str, int], *, cgroup: bool) -> list[tuple[int, int]]:
    """The runner's rlimits, inherited by every process of the sandbox."""
    limits = [
        (resource.RLIMIT_FSIZE, resources["diskMi"] * 1024 * 1024),
        (resource.RLIMIT_CORE, 0),
    ]
    if not cgroup:  # the cgroup limits memory; without one, the address space does
        limits.append((resource.RLIMIT_AS, resources["memoryMi"] * 1024 * 1024))
    return limits


def confine(pid: int, group: Cgroup | None, limits: list[tuple[int, int]]) -> None:
    """Put the runner into its cgroup and limits (blocking: a cgroup move may wait)."""
    if group is not None:
        group.add(pid)
    for which, value in limits:
        resource.prlimit(pid, which, (value, value))


async def bwrap_child_pid(info_fd: int) -> int:
    """The sandbox's pid as bubblewrap reports it on ``--info-fd`` (closes the fd)."""
    try:
        info: Any = json.loads(await read_fd(info_fd))
        return int(info["child-pid"])
    except (ValueError, KeyError, TypeError) as exc:
        raise NetworkError(f"bubblewrap's info is unreadable: {exc}") from exc


async def start_runner(
    sandbox: LocalSandbox,
    *,
    bwrap: str | None,
    group: Cgroup | None,
    bytecode: RunnerBytecode,
) -> RunnerClient:
    limits = rlimits(sandbox.spec.resources, cgroup=group is not None)
    if bwrap is None:
        workspace = str(sandbox.workspace)
        env = sandbox_env(sandbox.spec.env, home=workspace, workspace=workspace)
        argv = [system_python(), "-I", "-S", "-c", boot(RUNNER.parent), workspace]

        async def confine_unisolated(proc: asyncio.subprocess.Process) -> Callable[[], None]:
            await asyncio.to_thread(confine, proc.pid, group, limits)
            return lambda: None

        return await RunnerClient.start(
            argv, after_spawn=confine_unisolated, env=env, cwd=workspace, umask=UMASK
        )

    env = sandbox_env(sandbox.spec.env, home="/tmp", workspace="/workspace")
    await asyncio.to_thread(make_scratch, sandbox.workspace)
    resolv = None
    if sandbox.spec.network:
        resolv = sandbox.root / "resolv.conf"
        resolv.write_text(RESOLV_CONF)
    pycache = await bytecode.directory()  # before the pipe: nothing to close if cancelled
    info_r, info_w = os.pipe()
    fds = {"info_r": info_r, "info_w": info_w}
    argv = bwrap_argv(
        bwrap,
        workspace=sandbox.workspace,
        sandbox_root=sandbox.root,
        env=env,
        info_fd=info_w,
        resolv_conf=resolv,
        pycache=pycache,
    )
    argv += [system_python(), "-I", "-S", "-c", boot("/runyard"), "/workspace"]

    async def confine_sandbox(_: asyncio.subprocess.Process) -> Callable[[], None]:
        os.close(fds.pop("info_w"))  # bubblewrap holds the only writer now: EOF comes
        child = await bwrap_child_pid(fds.pop("info_r"))
        await asyncio.to_thread(confine, child, group, limits)
        if not sandbox.spec.network:
            return lambda: None
        return (await Slirp.attach(child)).stop

    try:
        return await RunnerClient.start(
            argv,
            after_spawn=confine_sandbox,
            env={"PATH": env["PATH"]},
            cwd="/",
            umask=UMASK,
            pass_fds=(info_w,),
        )
    finally:
        for fd in fds.values():  # the start failed before confine_sandbox took them
            os.close(fd)
