"""A per-sandbox disk limit: the workspace lives on its own ext4 image, loop-mounted.

The image is a sparse file of the size's ``diskMi`` on the data dir's own disk, copied
from a template formatted once per size (copying the few MB of metadata takes a few ms;
``mkfs`` would take ~100 ms). ``noinit_itable`` keeps the kernel from zeroing inode
tables in the background. Where loop mounts are not possible (not root, no loop
devices) the provider says so at start and falls back to a plain directory with a
per-file limit (``RLIMIT_FSIZE``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

_MKFS = ("mkfs.ext4", "-q", "-F", "-m", "0", "-i", "32768", "-E")
_MKFS_EXT = "lazy_itable_init=1,lazy_journal_init=1,nodiscard"
_MOUNT_OPTS = "loop,noinit_itable,nodev,nosuid,noatime"
_TIMEOUT = 60.0


class DiskError(Exception):
    pass


def loop_mounts_possible() -> str | None:
    """None if loop-mounted images can be used here, else why not."""
    if os.geteuid() != 0:
        return "the worker is not root"
    if not Path("/dev/loop-control").exists():
        return "there are no loop devices (/dev/loop-control)"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"},
    )
    try:
        async with asyncio.timeout(_TIMEOUT):
            _, err = await proc.communicate()
    except TimeoutError as exc:
        proc.kill()
        raise DiskError(f"{argv[0]} timed out") from exc
    if proc.returncode != 0:
        raise DiskError(f"{' '.join(argv[:2])}… failed: {err.decode(errors='replace')[-500:]}")


def _sparse_copy(src: Path, dst: Path) -> None:
    """Copy only the data extents of ``src`` (SEEK_DATA/SEEK_HOLE); holes stay holes."""
    tmp = dst.with_suffix(".part")
    with src.open("rb") as fi, tmp.open("wb") as fo:
        size = os.fstat(fi.fileno()).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fi.fileno(), pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(fi.fileno(), start, os.SEEK_HOLE)
            os.lseek(fi.fileno(), start, os.SEEK_SET)
            os.lseek(fo.fileno(), start, os.SEEK_SET)
            left = end - start
            while left > 0:
                n = os.copy_file_range(fi.fileno(), fo.fileno(), min(left, 1 << 24))
                if n == 0:
                    break
                left -= n
            pos = end
        fo.truncate(size)
    tmp.rename(dst)


class LoopDisks:
    def __init__(self, images_dir: Path) -> None:
        self.images_dir = images_dir
        self._lock = asyncio.Lock()

    async def _template(self, size_mi: int) -> Path:
        path = self.images_dir / f"ext4-{size_mi}Mi.img"
        if path.exists():
            return path
        async with self._lock:
            if not path.exists():
                self.images_dir.mkdir(parents=True, exist_ok=True)
                part = path.with_suffix(f".{os.getpid()}.part")
                with part.open("wb") as f:
                    f.truncate(size_mi * 1024 * 1024)
                await _run(*_MKFS, _MKFS_EXT, str(part))
                part.rename(path)
        return path

    async def create(self, image: Path, mountpoint: Path, size_mi: int) -> None:
        template = await self._template(size_mi)
        await asyncio.to_thread(_sparse_copy, template, image)  # our own file: bounded
        await self.mount(image, mountpoint)

    async def mount(self, image: Path, mountpoint: Path) -> None:
        if is_mount(mountpoint):
            return
        _mkdir(mountpoint)
        await _run("mount", "-t", "ext4", "-o", _MOUNT_OPTS, str(image), str(mountpoint))

    async def unmount(self, mountpoint: Path) -> None:
        if not is_mount(mountpoint):
            return
        try:
            await _run("umount", str(mountpoint))
        except DiskError:
            await _run("umount", "-l", str(mountpoint))  # busy: detach now, free when idle


# Metadata of the sandbox's own directories (not agent-made files): quick, never blocks.
def is_mount(path: Path) -> bool:
    return os.path.ismount(path)


def _mkdir(path: Path) -> None:
    path.mkdir(exist_ok=True)


def free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize
