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
import ctypes
import errno
import fcntl
import os
import shutil
import struct
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


_LOOP_CTL_GET_FREE, _LOOP_CONFIGURE, _LO_FLAGS_AUTOCLEAR = 0x4C82, 0x4C0A, 4
_MS_NOSUID, _MS_NODEV, _MS_NOATIME = 2, 4, 1024
_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def _loop_config(fd: int) -> bytes:
    """struct loop_config: the backing fd, block size 0, a loop_info64 with autoclear."""
    info = struct.pack("=5Q4I64s64s32s2Q", 0, 0, 0, 0, 0, 0, 0, 0, _LO_FLAGS_AUTOCLEAR,
                       b"", b"", b"", 0, 0)  # fmt: skip
    return struct.pack("=II", fd, 0) + info + bytes(64)


def _mount_image(image: Path, mountpoint: Path) -> None:
    """What ``mount -o loop,…`` does, without a process: a free loop device bound to the
    image (autoclear: it goes away with the mount), then mount(2)."""
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(20):  # another process may take the free device first
            ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
            try:
                n = fcntl.ioctl(ctl, _LOOP_CTL_GET_FREE)
            finally:
                os.close(ctl)
            dev = f"/dev/loop{n}"
            loop = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
            try:
                try:
                    fcntl.ioctl(loop, _LOOP_CONFIGURE, _loop_config(backing))
                except OSError as exc:
                    if exc.errno == errno.EBUSY:
                        continue
                    raise
                flags = _MS_NOSUID | _MS_NODEV | _MS_NOATIME
                if _libc.mount(dev.encode(), bytes(mountpoint), b"ext4", flags,
                               b"noinit_itable") != 0:  # fmt: skip
                    err = ctypes.get_errno()
                    raise OSError(err, f"mount {dev} on {mountpoint}: {os.strerror(err)}")
                return
            finally:
                os.close(loop)  # autoclear: the mount holds the device from now on
        raise OSError(errno.EBUSY, "no free loop device")
    finally:
        os.close(backing)


def _unmount(mountpoint: Path) -> None:
    if _libc.umount2(bytes(mountpoint), 0) != 0:
        if _libc.umount2(bytes(mountpoint), _MNT_DETACH) != 0:  # busy: detach, free later
            err = ctypes.get_errno()
            raise OSError(err, f"umount {mountpoint}: {os.strerror(err)}")


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
        try:  # our own image and directory: bounded, a few ms
            await asyncio.to_thread(_mount_image, image, mountpoint)
        except OSError:  # e.g. a kernel before LOOP_CONFIGURE (5.8): the mount tool
            await _run("mount", "-t", "ext4", "-o", _MOUNT_OPTS, str(image), str(mountpoint))

    async def unmount(self, mountpoint: Path) -> None:
        if not is_mount(mountpoint):
            return
        try:
            await asyncio.to_thread(_unmount, mountpoint)
        except OSError as exc:
            raise DiskError(str(exc)) from exc


# Metadata of the sandbox's own directories (not agent-made files): quick, never blocks.
def is_mount(path: Path) -> bool:
    return os.path.ismount(path)


def _mkdir(path: Path) -> None:
    path.mkdir(exist_ok=True)


def unmount_all(sandboxes_dir: Path) -> int:
    """Unmount every sandbox disk under ``sandboxes_dir`` (e.g. a test stack's, at its end:
    sandboxes of runs that never finished stay mounted otherwise). How many it unmounted."""
    count = 0
    for mountpoint in sorted(sandboxes_dir.glob("*/disk")):
        if is_mount(mountpoint):
            _unmount(mountpoint)
            count += 1
    return count


def free_space(path: Path) -> tuple[int, int] | None:
    """Free bytes and free inodes of the filesystem of ``path``: running out of either
    is a full disk (an image of ``diskMi`` has ``diskMi`` / 32 KiB inodes)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize, st.f_favail
