"""The ``local`` sandbox provider: a workspace directory per run on the worker's machine.

Commands run under bubblewrap when it is installed (no network unless the template asks
for it, a read-only system, only the workspace writable, a private /tmp, pid namespace so
nothing outlives the sandbox) and fall back to plain processes with rlimits, with a
warning, where it is not. Memory and file size are capped by rlimits from the size.
A worker that restarts finds the sandbox again by id: its state is the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import resource
import secrets
import shutil
import signal
from pathlib import Path
from typing import Any

import structlog

from runyard.git.clone import clone_for_sandbox
from runyard.sandbox.base import ExecResult, SandboxError, SandboxSpec
from runyard.sandbox.cgroups import Cgroup, join

log = structlog.get_logger(__name__)

_OUTPUT_CAP = 100_000  # bytes of stdout/stderr kept per command (head and tail)
_RO_DIRS = ("/usr", "/etc/alternatives", "/etc/ssl", "/etc/ca-certificates", "/opt")
_RO_FILES = (
    "/etc/ld.so.cache",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/gitconfig",
    "/etc/mime.types",
)
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PR_SET_PDEATHSIG = 1


def bwrap_path(mode: str) -> str | None:
    """The bwrap binary to use for ``RUNYARD_SANDBOX_BWRAP`` (auto | on | off)."""
    if mode == "off":
        return None
    found = shutil.which("bwrap")
    if found is None and mode == "on":
        raise SandboxError("RUNYARD_SANDBOX_BWRAP=on but bwrap is not installed")
    return found


def _limits(resources: dict[str, int], cgroup_procs: list[str] | None) -> Any:
    mem = resources["memoryMi"] * 1024 * 1024
    disk = resources["diskMi"] * 1024 * 1024
    libc = ctypes.CDLL(None, use_errno=True)

    def apply() -> None:  # runs in the child between fork and exec
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if cgroup_procs:
            join(cgroup_procs)  # the cgroup enforces memory and process count
        else:
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (disk, disk))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _read_capped(path: Path) -> str:
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size <= _OUTPUT_CAP:
                data = f.read()
            else:
                head = f.read(_OUTPUT_CAP // 2)
                f.seek(size - _OUTPUT_CAP // 2)
                tail = f.read()
                data = head + f"\n… [{size - _OUTPUT_CAP} bytes cut] …\n".encode() + tail
    except FileNotFoundError:  # the sandbox was destroyed while the command ran
        return ""
    return data.decode("utf-8", errors="replace")


class LocalSandbox:
    def __init__(self, provider: LocalSandboxProvider, sandbox_id: str, root: Path) -> None:
        self.id = sandbox_id
        self._provider = provider
        self.root = root
        self.workspace = root / "workspace"
        meta = json.loads((root / "meta.json").read_text())
        self.spec = SandboxSpec(
            size=meta["size"], env=meta.get("env", {}), network=meta.get("network", False)
        )

    # -- processes -----------------------------------------------------------------

    def _argv(self, command: str) -> tuple[list[str], dict[str, str], str]:
        env = {"PATH": _PATH, "LANG": "C.UTF-8", "TERM": "dumb", **self.spec.env}
        bwrap = self._provider.bwrap
        if bwrap is None:
            env["HOME"] = str(self.workspace)
            return ["/bin/bash", "-c", command], env, str(self.workspace)
        argv = [bwrap, "--die-with-parent", "--new-session", "--unshare-all"]
        if self.spec.network:
            argv.append("--share-net")
        for d in ("/bin", "/lib", "/lib64", "/sbin"):
            if os.path.islink(d):
                argv += ["--symlink", os.readlink(d), d]
            elif os.path.isdir(d):
                argv += ["--ro-bind", d, d]
        for p in (*_RO_DIRS, *_RO_FILES):
            argv += ["--ro-bind-try", p, p]
        argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        argv += ["--bind", str(self.workspace), "/workspace", "--chdir", "/workspace"]
        remote = self.root / "remote"  # the credential-free origin (runyard.git.clone)
        if remote.is_dir():
            argv += ["--bind", str(remote), "/runyard/remote"]
            for part in ("hooks", "config"):
                argv += ["--ro-bind-try", *[str(remote / "origin.git" / part)] * 2]
        argv += ["--clearenv"]
        for k, v in {**env, "HOME": "/tmp", "PWD": "/workspace"}.items():
            argv += ["--setenv", k, v]
        argv += ["--", "/bin/bash", "-c", command]
        return argv, {}, str(self.workspace)

    async def exec(self, command: str, *, timeout: float) -> ExecResult:
        argv, env, cwd = self._argv(command)
        if not self.workspace.is_dir():
            raise SandboxError(f"sandbox {self.id} was destroyed")
        cgroup = self._provider.cgroup(self.id, self.spec.resources)
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        token = secrets.token_hex(6)
        out_path, err_path = logs / f"{token}.out", logs / f"{token}.err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=_limits(self.spec.resources, cgroup.procs_files if cgroup else None),
            )
        self._provider.track(self.id, proc)
        timed_out = False
        ooms = cgroup.oom_kills() if cgroup else 0
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            timed_out = True
            _kill(proc)
            await proc.wait()
        except asyncio.CancelledError:
            _kill(proc)
            raise
        finally:
            self._provider.untrack(self.id, proc)
            _kill(proc)  # nothing a command started may outlive it
        code = proc.returncode if proc.returncode is not None else -9
        oom = cgroup is not None and cgroup.oom_kills() > ooms
        try:
            return ExecResult(
                code, _read_capped(out_path), _read_capped(err_path), timed_out, oom_killed=oom
            )
        finally:
            out_path.unlink(missing_ok=True)
            err_path.unlink(missing_ok=True)

    # -- files ---------------------------------------------------------------------

    def resolve(self, path: str) -> Path:
        """``path`` inside the workspace (``/workspace/x``, ``x`` or ``./x``), or an error."""
        p = path.strip() or "."
        if p == "/workspace" or p.startswith("/workspace/"):
            p = p.removeprefix("/workspace").lstrip("/") or "."
        if os.path.isabs(p):
            raise PermissionError(f"{path}: outside the workspace")
        root = os.path.realpath(self.workspace)
        full = os.path.realpath(os.path.join(root, p))
        if os.path.commonpath([root, full]) != root:
            raise PermissionError(f"{path}: outside the workspace")
        return Path(full)

    async def read_file(self, path: str) -> bytes:
        return await asyncio.to_thread(self.resolve(path).read_bytes)

    async def write_file(self, path: str, data: bytes) -> None:
        target = self.resolve(path)

        def write() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

        await asyncio.to_thread(write)

    async def list_files(self, path: str, *, max_entries: int) -> list[str]:
        base = self.resolve(path)

        def walk() -> list[str]:
            root = Path(os.path.realpath(self.workspace))
            found: list[str] = []
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames[:] = sorted(d for d in dirnames if d != ".git")
                for name in sorted(filenames):
                    found.append(str((Path(dirpath) / name).relative_to(root)))
                    if len(found) >= max_entries:
                        return found
            return found

        return await asyncio.to_thread(walk)


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class LocalSandboxProvider:
    name = "local"

    def __init__(
        self, root: Path, *, bwrap: str | None, use_cgroups: bool = True, pids_max: int = 512
    ) -> None:
        self.root = root
        self.bwrap = bwrap
        self.pids_max = pids_max
        self._procs: dict[str, set[asyncio.subprocess.Process]] = {}
        self._cgroups: dict[str, Cgroup | None] = {}
        probe = (
            Cgroup.open(f"probe-{os.getpid()}", memory_bytes=64 * 1024 * 1024, pids_max=8)
            if use_cgroups
            else None
        )
        self.use_cgroups = probe is not None
        if probe is not None:
            probe.remove()
        else:
            log.warning(
                "sandbox.no_cgroups",
                message="cgroups are not writable here: sandbox memory is limited by RLIMIT_AS "
                "and the process count is not limited; a memory overrun is not reported as "
                "RUN_RESOURCE_LIMIT_EXCEEDED.",
            )
        if bwrap is None:
            log.warning(
                "sandbox.unisolated",
                message="bubblewrap (bwrap) is not installed: local sandbox commands run as "
                "plain processes with rlimits only, with the worker's view of the filesystem "
                "and network. Install the 'bubblewrap' package to isolate them.",
            )

    def cgroup(self, sandbox_id: str, resources: dict[str, int]) -> Cgroup | None:
        if not self.use_cgroups:
            return None
        if sandbox_id not in self._cgroups:
            self._cgroups[sandbox_id] = Cgroup.open(
                sandbox_id, memory_bytes=resources["memoryMi"] * 1024 * 1024, pids_max=self.pids_max
            )
        return self._cgroups[sandbox_id]

    def track(self, sandbox_id: str, proc: asyncio.subprocess.Process) -> None:
        self._procs.setdefault(sandbox_id, set()).add(proc)

    def untrack(self, sandbox_id: str, proc: asyncio.subprocess.Process) -> None:
        self._procs.get(sandbox_id, set()).discard(proc)

    def _dir(self, sandbox_id: str) -> Path:
        if not sandbox_id.startswith("sbx_") or "/" in sandbox_id or ".." in sandbox_id:
            raise SandboxError(f"bad sandbox id {sandbox_id!r}")
        return self.root / sandbox_id

    async def create(self, sandbox_id: str, spec: SandboxSpec) -> LocalSandbox:
        root = self._dir(sandbox_id)
        if (root / "ready").exists():
            return LocalSandbox(self, sandbox_id, root)
        if root.exists():  # a previous attempt died half way: start again
            await asyncio.to_thread(shutil.rmtree, root, True)
        (root / "workspace").mkdir(parents=True)
        meta = {"size": spec.size, "env": spec.env, "network": spec.network}
        (root / "meta.json").write_text(json.dumps(meta))
        if spec.repo_url:
            await clone_for_sandbox(spec.repo_url, root, isolated=self.bwrap is not None)
        sandbox = LocalSandbox(self, sandbox_id, root)
        if spec.setup_script:
            res = await sandbox.exec(spec.setup_script, timeout=900)
            if res.exit_code != 0:
                output = res.stderr[-2000:] or res.stdout[-2000:]
                raise SandboxError(f"setup script exited {res.exit_code}: {output}")
        (root / "ready").touch()
        return sandbox

    async def get(self, sandbox_id: str) -> LocalSandbox:
        root = self._dir(sandbox_id)
        if not (root / "ready").exists():
            raise SandboxError(f"sandbox {sandbox_id} does not exist")
        return LocalSandbox(self, sandbox_id, root)

    async def destroy(self, sandbox_id: str) -> None:
        for proc in list(self._procs.pop(sandbox_id, set())):
            _kill(proc)
        root = self._dir(sandbox_id)
        group = self._cgroups.pop(sandbox_id, None)
        if group is None and self.use_cgroups:  # e.g. created by a worker that died
            group = Cgroup.open(sandbox_id, memory_bytes=1 << 30, pids_max=self.pids_max)
        if group is not None:
            group.remove()
        if root.exists():
            await asyncio.to_thread(shutil.rmtree, root, True)
