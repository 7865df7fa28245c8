"""Per-sandbox cgroups: a hard memory limit (the kernel OOM-kills inside the sandbox
only), a process limit (a fork bomb stops there), a CPU quota from the size's
``cpuMillis`` (``cpu.max``, or ``cpu.cfs_quota_us`` on v1), a freezer (``cgroup.freeze``,
or the v1 ``freezer`` hierarchy) that stops every process of a sandbox waiting for input,
plus a way to kill everything left in the sandbox. cgroup v1 (memory + pids hierarchies)
and v2 are supported; where neither is writable the local provider falls back to rlimits
and says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")
_PERIOD = 100_000  # µs


class Cgroup:
    def __init__(self, dirs: list[Path], memory_dir: Path, v2: bool) -> None:
        self.dirs, self.memory_dir, self.v2 = dirs, memory_dir, v2
        self.cpu_limited = False
        # Where the freeze switch is: the group itself on v2, the freezer hierarchy on v1.
        self.freezer_dir: Path | None = memory_dir if v2 else None

    @classmethod
    def open(
        cls,
        name: str,
        *,
        memory_bytes: int,
        pids_max: int,
        cpu_millis: int | None = None,
        root: Path = _ROOT,
    ) -> Cgroup | None:
        """The sandbox's cgroup, created if needed; None where cgroups cannot be used.

        The CPU quota is applied where the cpu controller is there (a missing one only
        leaves CPU unlimited, see ``cpu_limited``).
        """
        quota = cpu_millis * _PERIOD // 1000 if cpu_millis else None
        try:
            if (root / "memory").is_dir() and (root / "pids").is_dir():
                mem, pids = root / "memory" / "runyard" / name, root / "pids" / "runyard" / name
                mem.mkdir(parents=True, exist_ok=True)
                pids.mkdir(parents=True, exist_ok=True)
                (mem / "memory.limit_in_bytes").write_text(str(memory_bytes))
                (pids / "pids.max").write_text(str(pids_max))
                dirs = [mem, pids]
                cpu = root / "cpu" / "runyard" / name
                if quota and (root / "cpu" / "cpu.cfs_quota_us").exists():
                    cpu.mkdir(parents=True, exist_ok=True)
                    (cpu / "cpu.cfs_period_us").write_text(str(_PERIOD))
                    (cpu / "cpu.cfs_quota_us").write_text(str(quota))
                    dirs.append(cpu)
                freezer = root / "freezer" / "runyard" / name
                if (root / "freezer" / "cgroup.procs").exists():
                    freezer.mkdir(parents=True, exist_ok=True)
                    dirs.append(freezer)
                group = cls(dirs, mem, v2=False)
                group.cpu_limited = cpu in dirs
                group.freezer_dir = freezer if freezer in dirs else None
                return group
            controllers = (root / "cgroup.controllers").read_text().split()
            if "memory" in controllers and "pids" in controllers:
                parent = root / "runyard"
                parent.mkdir(exist_ok=True)
                wanted = "+memory +pids" + (" +cpu" if "cpu" in controllers else "")
                (parent / "cgroup.subtree_control").write_text(wanted)
                group_dir = parent / name
                group_dir.mkdir(exist_ok=True)
                (group_dir / "memory.max").write_text(str(memory_bytes))
                (group_dir / "pids.max").write_text(str(pids_max))
                group = cls([group_dir], group_dir, v2=True)
                if quota and (group_dir / "cpu.max").exists():
                    (group_dir / "cpu.max").write_text(f"{quota} {_PERIOD}")
                    group.cpu_limited = True
                return group
        except OSError:
            return None
        return None

    @classmethod
    def find(cls, name: str, root: Path = _ROOT) -> Cgroup | None:
        """The sandbox's cgroup if it is there (made by a worker now gone), never made here."""
        if (root / "memory").is_dir() and (root / "pids").is_dir():
            dirs = [root / c / "runyard" / name for c in ("memory", "pids", "cpu", "freezer")]
            found = [d for d in dirs if d.is_dir()]
            if not found:
                return None
            group = cls(found, dirs[0], v2=False)
            group.freezer_dir = dirs[3] if dirs[3] in found else None
            return group
        group_dir = root / "runyard" / name
        return cls([group_dir], group_dir, v2=True) if group_dir.is_dir() else None

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def add(self, pid: int) -> None:
        """Move the process ``pid`` (not its children, if any) into the cgroup."""
        for path in self.procs_files:
            with open(path, "w") as f:
                f.write(str(pid))

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

    @property
    def can_freeze(self) -> bool:
        return self.freezer_dir is not None

    def freeze(self) -> None:
        """Stop every process of the group (they use no CPU until ``thaw``)."""
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def _set_frozen(self, frozen: bool) -> None:
        if self.freezer_dir is None:
            return
        if self.v2:
            (self.freezer_dir / "cgroup.freeze").write_text("1" if frozen else "0")
        else:
            (self.freezer_dir / "freezer.state").write_text("FROZEN" if frozen else "THAWED")

    def frozen(self) -> bool:
        """The kernel says every process of the group is frozen (v1: FROZEN, not FREEZING)."""
        if self.freezer_dir is None:
            return False
        try:
            if self.v2:
                events = (self.freezer_dir / "cgroup.events").read_text().split("\n")
                return "frozen 1" in events
            return (self.freezer_dir / "freezer.state").read_text().strip() == "FROZEN"
        except OSError:
            return False

    def kill_all(self) -> None:
        """SIGKILL every process of the cgroup, again until none is left (forks race).

        A frozen group is thawed first: on v1 a frozen process does not die until thawed."""
        with contextlib.suppress(OSError):
            self.thaw()
        for _ in range(50):
            pids: set[str] = set()
            for d in self.dirs:
                with contextlib.suppress(OSError):
                    pids.update((d / "cgroup.procs").read_text().split())
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.01)

    def remove(self) -> None:
        self.kill_all()
        for d in self.dirs:
            with contextlib.suppress(OSError):
                d.rmdir()
