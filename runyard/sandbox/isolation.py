"""How the local provider isolates a sandbox: bubblewrap's arguments, the sandbox's
environment, and the start-up announcement of what this machine can enforce.

Isolation is required: without bubblewrap a run fails ``SANDBOX_UNAVAILABLE`` unless
the operator sets ``RUNYARD_SANDBOX_BWRAP=off``. Even then the sandbox's environment
is built from nothing: no Runyard, Temporal, Anthropic, E2B, AWS or git secret of the
worker's environment reaches it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import structlog

from runyard.sandbox.runner_code import source_binds

log = structlog.get_logger("runyard.sandbox")

SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
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
_PROC_COVERED = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")
# Never passed from the worker's environment; listed so the docs and tests name them.
SECRET_PREFIXES = ("RUNYARD_", "TEMPORAL_", "ANTHROPIC_", "E2B_", "AWS_", "GIT_", "GITHUB_")


def bwrap_path(mode: str) -> str | None:
    """The bwrap to use for ``RUNYARD_SANDBOX_BWRAP`` (auto | on | off); None for off.

    A missing bwrap is returned as the bare name ``bwrap``: the provider then refuses to
    create sandboxes (``SANDBOX_UNAVAILABLE``) instead of running them unisolated.
    """
    if mode == "off":
        return None
    return shutil.which("bwrap") or "bwrap"


def system_python() -> str:
    """The Python that runs ``runner.py``: the system's, visible inside the sandbox."""
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return sys.executable


def sandbox_env(user_env: dict[str, str], *, home: str, workspace: str) -> dict[str, str]:
    """The whole environment of the sandbox: a fixed base and the run's/template's env."""
    return {
        "PATH": SANDBOX_PATH,
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        **user_env,
        "HOME": home,
        "PWD": workspace,
    }


def writable_dirs(workspace: Path) -> dict[str, Path]:
    """The host directories bound writable into a sandbox besides its workspace: all
    beside it, on the sandbox's own disk (``remote`` is made by the clone, if any)."""
    disk = workspace.parent
    return {"tmp": disk / "tmp", "shm": disk / "shm", "remote": disk / "remote"}


def make_scratch(workspace: Path) -> None:
    """Create ``/tmp`` and ``/dev/shm`` of a sandbox on its disk (before each runner
    start: a sandbox made by an older worker has none). Runyard's own directory, which no
    command can reach (only the directories inside it are bound)."""
    dirs = writable_dirs(workspace)
    for name in ("tmp", "shm"):
        dirs[name].mkdir(exist_ok=True)
        dirs[name].chmod(0o1777)


def bwrap_argv(
    bwrap: str,
    *,
    workspace: Path,
    sandbox_root: Path,
    env: dict[str, str],
    info_fd: int | None = None,
    resolv_conf: Path | None = None,
    pycache: Path | None = None,
) -> list[str]:
    """bubblewrap's arguments up to the ``--`` (the command follows).

    The sandbox always gets its own network namespace; ``info_fd`` makes bubblewrap
    report the sandbox's pid there (to confine it and give it a network, see
    ``runner_start.py``),
    ``resolv_conf`` replaces the host's /etc/resolv.conf and ``pycache`` is the runner's
    bytecode (``runner_code.py``).
    """
    # Run as root, bubblewrap keeps every capability unless told: the sandbox would
    # mount, load modules, ptrace the runner. All are dropped.
    # ``--as-pid-1``: the runner itself is pid 1 of the sandbox, no bubblewrap init
    # beside it. That init would hold a copy of the protocol pipes (its fds 0 and 1) and
    # be dumpable, so any command could open ``/proc/1/fd/1`` and forge answers. Now the
    # only holder inside is the runner, which is not dumpable; as pid 1 it gets no signal
    # it has no handler for from inside, and it can kill every other process at once.
    argv = [bwrap, "--die-with-parent", "--new-session", "--unshare-all", "--cap-drop", "ALL"]
    argv += ["--as-pid-1"]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    for d in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(d):
            argv += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            argv += ["--ro-bind", d, d]
    for p in (*_RO_DIRS, *_RO_FILES):
        if p == "/etc/resolv.conf" and resolv_conf is not None:
            argv += ["--ro-bind", str(resolv_conf), p]
        else:
            argv += ["--ro-bind-try", p, p]
    # Every place a command may write is a directory beside the workspace, on the same
    # disk (the sandbox's image of ``diskMi``, see ``disk.py``): /workspace, /tmp (also
    # HOME), /dev/shm and /runyard/remote/origin.git. bubblewrap's own tmpfs (/, /dev) is
    # read-only.
    scratch = writable_dirs(workspace)
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--bind", str(scratch["tmp"]), "/tmp", "--bind", str(scratch["shm"]), "/dev/shm"]
    # The host's sysctls (and sysrq) are files that uid 0 may write even without
    # capabilities: read-only over themselves.
    for p in _PROC_COVERED:
        argv += ["--ro-bind-try", p, p]
    argv += ["--bind", str(workspace), "/workspace", "--chdir", "/workspace"]
    argv += source_binds(pycache)
    # A local bare "origin" the agent may push to, whose hooks and config it cannot change.
    # Only origin.git is writable, a mount point like its hooks and config: none of them
    # can be renamed away (EBUSY) and replaced by the agent's own (a writable
    # /runyard/remote let ``mv origin.git x; mkdir origin.git`` do it). Bound only while
    # they are what the clone made (not symlinks: bubblewrap would follow them on the
    # host). A sandbox made before the remote moved onto its disk keeps its old one.
    remote = scratch["remote"]
    if not remote.is_dir() and (sandbox_root / "remote").is_dir():
        remote = sandbox_root / "remote"
    origin = remote / "origin.git"
    if remote.is_dir() and not remote.is_symlink():
        argv += ["--ro-bind", str(remote), "/runyard/remote"]
        if origin.is_dir() and not origin.is_symlink():
            argv += ["--bind", str(origin), "/runyard/remote/origin.git"]
            for name in ("hooks", "config"):
                guarded = origin / name
                if guarded.exists() and not guarded.is_symlink():
                    argv += ["--ro-bind", str(guarded), f"/runyard/remote/origin.git/{name}"]
    argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
    argv += ["--clearenv"]
    for k, v in env.items():
        argv += ["--setenv", k, v]
    return [*argv, "--"]


def announce(bwrap_mode: str, *, cgroups: bool | None = None, disk: str | None = None) -> None:
    """Log loudly, at start, what sandboxes on this worker do not enforce.

    The worker and ``runyard dev`` call this once at start (the local provider also
    does when it is built).
    """
    if bwrap_mode == "off":
        log.warning(
            "sandbox.UNISOLATED",
            message="RUNYARD_SANDBOX_BWRAP=off: local sandboxes are NOT isolated. Agent code "
            "runs as the worker's user with the worker's view of the filesystem, processes "
            "and network (it can read files, reach Temporal and the database, kill the "
            "worker). Only the environment is scrubbed and every process a tool starts is "
            "killed when the call ends. Use this for trusted prompts only.",
        )
    elif shutil.which("bwrap") is None:
        log.error(
            "sandbox.bwrap_missing",
            message="bubblewrap (bwrap) is not installed: every run on this worker fails "
            "SANDBOX_UNAVAILABLE. Install the 'bubblewrap' package, or set "
            "RUNYARD_SANDBOX_BWRAP=off to run agent code unisolated.",
        )
    if cgroups is False:
        log.warning(
            "sandbox.no_cgroups",
            message="cgroups are not writable here: sandbox memory is limited by RLIMIT_AS, "
            "CPU and the process count are not limited, and a memory overrun is not "
            "reported as RUN_RESOURCE_LIMIT_EXCEEDED.",
        )
    if disk is not None:
        log.warning(
            "sandbox.no_disk_limit",
            message=f"per-sandbox disk limits are off ({disk}): a sandbox can fill the "
            "data dir's disk; only single files are limited (RLIMIT_FSIZE).",
        )
