"""Per-sandbox cgroups: a hard memory limit (the kernel OOM-kills inside the sandbox
only) and a process limit (a fork bomb stops there), plus a way to kill everything
left in the sandbox. cgroup v1 (memory + pids hierarchies) and v2 are supported; where
neither is writable the local provider falls back to rlimits and says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")


class Cgroup:
    def __init__(self, dirs: list[Path], memory_dir: Path, v2: bool) -> None:
        self.dirs, self.memory_dir, self.v2 = dirs, memory_dir, v2

    @classmethod
    def open(
        cls, name: str, *, memory_bytes: int, pids_max: int, root: Path = _ROOT
    ) -> Cgroup | None:
        """The sandbox's cgroup, created if needed; None where cgroups cannot be used."""
        try:
            if (root / "memory").is_dir() and (root / "pids").is_dir():
                mem, pids = root / "memory" / "runyard" / name, root / "pids" / "runyard" / name
                mem.mkdir(parents=True, exist_ok=True)
                pids.mkdir(parents=True, exist_ok=True)
                (mem / "memory.limit_in_bytes").write_text(str(memory_bytes))
                (pids / "pids.max").write_text(str(pids_max))
                return cls([mem, pids], mem, v2=False)
            controllers = (root / "cgroup.controllers").read_text().split()
            if "memory" in controllers and "pids" in controllers:
                parent = root / "runyard"
                parent.mkdir(exist_ok=True)
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
                group = parent / name
                group.mkdir(exist_ok=True)
                (group / "memory.max").write_text(str(memory_bytes))
                (group / "pids.max").write_text(str(pids_max))
                return cls([group], group, v2=True)
        except OSError:
            return None
        return None

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def oom_kills(self) -> int:
        name = "memory.events" if self.v2 else "memory.oom_control"
        try:
            for line in (self.memory_dir / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except OSError:
            pass
        return 0

    def kill_all(self) -> None:
        for d in self.dirs:
            with contextlib.suppress(OSError):
                for pid in (d / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(int(pid), signal.SIGKILL)

    def remove(self) -> None:
        self.kill_all()
        for d in self.dirs:
            with contextlib.suppress(OSError):
                d.rmdir()


def join(procs_files: list[str]) -> None:
    """Move the calling process into the cgroup (runs in the child before exec)."""
    pid = str(os.getpid())
    for path in procs_files:
        with open(path, "w") as f:
            f.write(pid)
