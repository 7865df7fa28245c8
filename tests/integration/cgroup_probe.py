"""Reading a sandbox's cgroup from a test: frozen or not, its processes, their CPU time,
and a CPU-bound process put into it (nothing a sandbox runs survives its exec call, so a
test brings its own busy process to show what freezing does to one)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def freezer_dir(sandbox_id: str) -> Path | None:
    """Where the sandbox's freeze switch is (v1 freezer hierarchy, or the v2 group)."""
    v1 = ROOT / "freezer" / "runyard" / sandbox_id
    if v1.is_dir():
        return v1
    v2 = ROOT / "runyard" / sandbox_id
    return v2 if (v2 / "cgroup.freeze").exists() else None


def frozen(group: Path) -> bool:
    if (group / "cgroup.events").exists():
        return "frozen 1" in (group / "cgroup.events").read_text().splitlines()
    return (group / "freezer.state").read_text().strip() == "FROZEN"


def pids(group: Path) -> list[int]:
    return [int(p) for p in (group / "cgroup.procs").read_text().split()]


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (clock ticks); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])


def alive(pid: int) -> bool:
    """Running, or stopped, but not gone and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@contextlib.contextmanager
def spinner_in(group: Path) -> Iterator[int]:
    """A process that burns CPU without end, moved into ``group``; killed after."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        (group / "cgroup.procs").write_text(str(proc.pid))
        yield proc.pid
    finally:
        # Out of the (maybe frozen) group first: a frozen process does not die on v1.
        with contextlib.suppress(OSError):
            (group.parent.parent / "cgroup.procs").write_text(str(proc.pid))
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
