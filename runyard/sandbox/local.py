"""The ``local`` sandbox provider: a workspace per run on the worker's machine, and one
long-lived process per sandbox (``runner.py``) that executes every tool inside it.

The runner is started at provision inside bubblewrap (pid, net, ipc, uts and mount
namespaces, the runner as pid 1; a read-only system and root; writable only the
workspace, /tmp, /dev/shm and the agent's origin) and the sandbox's cgroup
(``memory.max``, ``pids.max``, ``cpu.max`` from the size). All the writable directories
are on the sandbox's own loop-mounted ext4 image of the size's ``diskMi``. The worker only
sends it framed requests (``client.py``), so nothing an agent makes in the workspace (a
FIFO, a 10 GiB sparse file, a symlink) is ever opened by a worker thread. A worker that
restarts finds the sandbox again by id (its state is the directory) and starts a new
runner on the same workspace at the first call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path

import structlog

from runyard.git.clone import clone_for_sandbox
from runyard.sandbox.base import (
    SandboxError,
    SandboxSpec,
    SandboxUnavailable,
)
from runyard.sandbox.cgroups import Cgroup
from runyard.sandbox.client import RunnerClient, RunnerGone
from runyard.sandbox.disk import (
    DiskError,
    LoopDisks,
    is_mount,
    loop_mounts_possible,
)
from runyard.sandbox.isolation import (
    announce,
    bwrap_path,
    system_python,
)
from runyard.sandbox.local_sandbox import LocalSandbox
from runyard.sandbox.network import slirp_path
from runyard.sandbox.release import on_worker_stop, release_sandbox
from runyard.sandbox.runner_code import RunnerBytecode
from runyard.sandbox.runner_start import start_runner
from runyard.settings import Settings

__all__ = ["LocalSandbox", "LocalSandboxProvider", "bwrap_path", "local_provider"]


log = structlog.get_logger(__name__)


class LocalSandboxProvider:
    name = "local"

    def __init__(
        self,
        root: Path,
        *,
        bwrap: str | None,
        use_cgroups: bool = True,
        pids_max: int = 512,
        disk: str = "auto",
    ) -> None:
        """``bwrap``: its path, or None for ``RUNYARD_SANDBOX_BWRAP=off`` (unisolated).
        ``disk``: auto (a loop-mounted image per sandbox where possible) | loop | off."""
        self.root = root.absolute()  # bubblewrap binds resolve from /, not our cwd
        self.bwrap = bwrap
        self.pids_max = pids_max
        self.bytecode = RunnerBytecode(self.root / ".runner", system_python())
        self._runners: dict[str, RunnerClient] = {}
        self._starting: dict[str, asyncio.Task[RunnerClient]] = {}  # runners started by create
        self._locks: dict[str, asyncio.Lock] = {}
        self._cgroups: dict[str, Cgroup | None] = {}
        self.destroyed: set[str] = set()  # by this worker, while a call may be running
        self._held: set[str] = set()  # sandboxes this process ran, mounted or froze
        on_worker_stop(self.release)
        self._said_no_freezer = False
        probe = (
            Cgroup.open(f"probe-{os.getpid()}", memory_bytes=64 * 1024 * 1024, pids_max=8)
            if use_cgroups
            else None
        )
        self.use_cgroups = probe is not None
        if probe is not None:
            probe.remove()
        why_no_loop = loop_mounts_possible() if disk != "off" else "RUNYARD_SANDBOX_DISK=off"
        self.disk_required = disk == "loop"
        self.disks = LoopDisks(root / ".images") if why_no_loop is None else None
        self.why_no_loop = why_no_loop
        self.unavailable: str | None = None
        if bwrap is not None and shutil.which(bwrap) is None:
            self.unavailable = (
                "bubblewrap (bwrap) is not installed on this worker; install it, or set "
                "RUNYARD_SANDBOX_BWRAP=off to run sandboxes unisolated"
            )
        elif self.disk_required and why_no_loop is not None:
            self.unavailable = f"RUNYARD_SANDBOX_DISK=loop but {why_no_loop}"
        announce(
            "off" if bwrap is None else "on",
            cgroups=self.use_cgroups if use_cgroups else None,
            disk=why_no_loop if disk == "auto" else None,
        )

    # -- cgroups and runners --------------------------------------------------------

    def cgroup(self, sandbox: LocalSandbox) -> Cgroup | None:
        self._held.add(sandbox.id)
        if not self.use_cgroups:
            return None
        if sandbox.id not in self._cgroups:
            res = sandbox.spec.resources
            self._cgroups[sandbox.id] = Cgroup.open(
                sandbox.id,
                memory_bytes=res["memoryMi"] * 1024 * 1024,
                pids_max=self.pids_max,
                cpu_millis=res["cpuMillis"],
            )
        return self._cgroups[sandbox.id]

    async def runner(self, sandbox: LocalSandbox) -> RunnerClient:
        """The sandbox's runner, started if there is none (or it died)."""
        current = self._runners.get(sandbox.id)
        if current is not None and current.alive:
            return current
        lock = self._locks.setdefault(sandbox.id, asyncio.Lock())
        async with lock:
            current = self._runners.get(sandbox.id)
            if current is not None and current.alive:
                return current
            if current is not None:
                await current.close()
            group = self.cgroup(sandbox)
            if self.bwrap is None and group is not None:
                # Unisolated, a dead runner's commands outlive it (no pid namespace to
                # take them along): whatever is left in the sandbox's cgroup goes first.
                await asyncio.to_thread(group.kill_all)
            if not sandbox.workspace.is_dir():
                if sandbox.loop_disk and self.disks is not None:
                    await self._mount(sandbox.root)  # e.g. after the machine restarted
                if not sandbox.workspace.is_dir():
                    raise SandboxError(f"sandbox {sandbox.id} was destroyed")
            if group is not None:  # a new runner must not start in a frozen group
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(group.thaw)
            try:
                started = await start_runner(
                    sandbox, bwrap=self.bwrap, group=group, bytecode=self.bytecode
                )
            except RunnerGone as exc:
                raise SandboxError(str(exc)) from exc
            self._runners[sandbox.id] = started
            return started

    async def stop_runner(self, sandbox_id: str, runner: RunnerClient | None = None) -> None:
        """Kill the sandbox's runner (all of it); the next call starts a new one."""
        current = self._runners.get(sandbox_id)
        if runner is None or current is runner:
            self._runners.pop(sandbox_id, None)
        if current is not None and (runner is None or current is runner):
            await current.close()
        elif runner is not None:
            await runner.close()

    async def _mount(self, root: Path) -> None:
        assert self.disks is not None
        try:
            await self.disks.mount(root / "disk.img", root / "disk")
        except DiskError as exc:
            raise SandboxError(f"the sandbox's disk could not be mounted: {exc}") from exc

    # -- the protocol ----------------------------------------------------------------

    def _dir(self, sandbox_id: str) -> Path:
        if not sandbox_id.replace("_", "").replace("-", "").isalnum():
            raise SandboxError(f"invalid sandbox id {sandbox_id!r}")
        return self.root / sandbox_id

    async def create(self, sandbox_id: str, spec: SandboxSpec) -> LocalSandbox:
        if self.unavailable is not None:
            raise SandboxUnavailable(self.unavailable)
        if spec.network and self.bwrap is not None and slirp_path() is None:
            raise SandboxUnavailable(
                "network access needs slirp4netns on the worker (Debian: slirp4netns)"
            )
        root = self._dir(sandbox_id)
        if (root / "ready").exists():
            sandbox = LocalSandbox(self, sandbox_id, root)
            await self.runner(sandbox)
            return sandbox
        if root.exists():  # a provision that died half way: start again
            await self._remove(sandbox_id, root)
        root.mkdir(parents=True)
        self.destroyed.discard(sandbox_id)
        loop = self.disks is not None
        meta = {
            "size": spec.size,
            "env": spec.env,
            "network": spec.network,
            "disk": "loop" if loop else "dir",
        }
        (root / "meta.json").write_text(json.dumps(meta))
        self._held.add(sandbox_id)  # its disk is mounted next
        if self.disks is not None:
            try:
                await self.disks.create(root / "disk.img", root / "disk", spec.resources["diskMi"])
            except DiskError as exc:
                raise SandboxError(f"the sandbox's disk could not be created: {exc}") from exc
        workspace = root / "disk" / "workspace"
        workspace.parent.mkdir(exist_ok=True)
        if spec.repo_url:
            isolated = self.bwrap is not None
            await clone_for_sandbox(spec.repo_url, root, isolated=isolated, workspace=workspace)
        else:
            workspace.mkdir()
        sandbox = LocalSandbox(self, sandbox_id, root)
        (root / "ready").touch()  # the setup script is the setup_sandbox activity's
        self._start_soon(sandbox)
        return sandbox

    def _start_soon(self, sandbox: LocalSandbox) -> None:
        """Start the new sandbox's runner without waiting for it (~40 ms of bubblewrap and
        Python start): it comes up while the run's first model turn runs, and the first
        call waits for it (``runner``). A start that fails is tried again by that call."""

        def started(task: asyncio.Task[RunnerClient]) -> None:
            if self._starting.get(sandbox.id) is task:
                del self._starting[sandbox.id]
            if not task.cancelled() and (exc := task.exception()) is not None:
                log.warning("sandbox.runner_start_failed", sandbox_id=sandbox.id, error=str(exc))

        task = asyncio.create_task(self.runner(sandbox), name=f"runner-start-{sandbox.id}")
        task.add_done_callback(started)
        self._starting[sandbox.id] = task

    async def get(self, sandbox_id: str) -> LocalSandbox:
        if self.unavailable is not None:
            raise SandboxUnavailable(self.unavailable)
        root = self._dir(sandbox_id)
        if not (root / "ready").exists():
            raise SandboxError(f"sandbox {sandbox_id} does not exist")
        return LocalSandbox(self, sandbox_id, root)

    async def destroy(self, sandbox_id: str) -> None:
        root = self._dir(sandbox_id)
        await self._remove(sandbox_id, root)

    async def list_ids(self) -> list[str]:
        """Every sandbox directory under the root (the ones half made or half destroyed
        too: the reaper finishes those)."""

        def scan() -> list[str]:
            if not self.root.is_dir():
                return []
            return sorted(
                d.name
                for d in self.root.iterdir()
                if d.is_dir() and not d.name.startswith(".") and (d / "meta.json").exists()
            )

        return await asyncio.to_thread(scan)

    async def pause(self, sandbox_id: str) -> None:
        """Freeze the sandbox's cgroup: its processes keep their memory, use no CPU."""
        group = self._freezer(sandbox_id)
        if group is not None:
            await asyncio.to_thread(group.freeze)

    async def resume(self, sandbox_id: str) -> None:
        group = self._freezer(sandbox_id)
        if group is not None:
            await asyncio.to_thread(group.thaw)

    def _freezer(self, sandbox_id: str) -> Cgroup | None:
        """The cgroup to freeze or thaw; None (and a log line, once) where there is none."""
        root = self._dir(sandbox_id)
        if sandbox_id in self.destroyed or not (root / "ready").exists():
            return None  # gone, or being made: nothing to pause
        group = self.cgroup(LocalSandbox(self, sandbox_id, root))
        if group is None or not group.can_freeze:
            if not self._said_no_freezer:
                self._said_no_freezer = True
                log.warning(
                    "sandbox.pause_unsupported",
                    reason="no writable cgroup freezer on this worker: "
                    "a sandbox waiting for input keeps running",
                )
            return None
        return group

    async def _remove(self, sandbox_id: str, root: Path) -> None:
        self.destroyed.add(sandbox_id)
        self._held.discard(sandbox_id)
        group = self._cgroups.pop(sandbox_id, None)
        if group is None and self.use_cgroups:  # e.g. created by a worker that died
            group = Cgroup.open(sandbox_id, memory_bytes=1 << 30, pids_max=self.pids_max)
        if group is not None:  # a paused sandbox's processes die only once thawed (v1)
            with contextlib.suppress(OSError):
                await asyncio.to_thread(group.thaw)
        starting = self._starting.pop(sandbox_id, None)
        if starting is not None:  # let it finish, so that the runner it starts is stopped
            await asyncio.wait([starting])
        await self.stop_runner(sandbox_id)
        if group is not None:
            await asyncio.to_thread(group.remove)
        if self.disks is not None:
            with contextlib.suppress(DiskError):
                await self.disks.unmount(root / "disk")
        if not is_mount(root / "disk"):  # never delete through a mount that stayed
            await asyncio.to_thread(shutil.rmtree, root, True)
        self._locks.pop(sandbox_id, None)

    def release(self) -> int:
        """The worker stops: release what it holds of its sandboxes (``release.py``); a
        held sandbox's cgroup, if any, is in ``_cgroups`` (its runner started there)."""
        held, self._held = self._held, set()
        for sid in sorted(held):
            group = self._cgroups.pop(sid, None)
            release_sandbox(self._dir(sid), self._runners.pop(sid, None), group)
        return len(held)


def local_provider(settings: Settings) -> LocalSandboxProvider:
    """The local provider as the settings ask (announces at start what it cannot enforce)."""
    return LocalSandboxProvider(
        settings.sandboxes_dir, bwrap=bwrap_path(settings.sandbox_bwrap), disk=settings.sandbox_disk
    )
