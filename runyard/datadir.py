"""The data dir is private to the user that runs Runyard.

It holds the store (env values, webhook secrets, API key hashes), the secret key,
artifacts, logs and the Temporal dev server's state. Every Runyard process that writes
there (``runyard dev``, the API, the worker) calls :func:`private_data_dir` first: the
process's umask becomes 077, so whatever it or its children create (SQLite files with
their ``-wal``/``-shm``, artifacts, logs, the Temporal dev server's database) is 0600 in
0700 directories, and a data dir left readable by an older version is tightened.
Sandboxes set their own umask (022): the agent's files follow the usual convention, and
what Runyard writes into a repository outside the data dir (a push into a local
repository) gets the umask the process started with, :func:`operator_umask`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import structlog

PRIVATE_UMASK = 0o077
log = structlog.get_logger("runyard.datadir")
_operator_umask: int | None = None  # the umask before private_data_dir changed it
# What an older version left readable, tightened at start (the artifacts tree included).
_TIGHTEN_TREES = ("artifacts", "logs")


def private_data_dir(data_dir: Path) -> None:
    """Make the process's files private and ``data_dir`` (created if missing) 0700."""
    global _operator_umask
    before = os.umask(PRIVATE_UMASK)
    if _operator_umask is None:
        _operator_umask = before
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir = data_dir.resolve()  # a data dir that is a symlink: the directory it names
    _tighten(data_dir)
    try:
        entries = list(data_dir.iterdir())
    except OSError:
        return
    for entry in entries:
        _tighten(entry)
        if entry.name in _TIGHTEN_TREES and entry.is_dir() and not entry.is_symlink():
            for root, dirs, files in os.walk(entry):
                for name in (*dirs, *files):
                    _tighten(Path(root) / name)


def operator_umask() -> int:
    """The umask this process started with (the operator's), for files Runyard writes
    outside its data dir, in a tree someone else may read: a local repository that other
    users or a git server read must not get objects only the worker's user can read."""
    if _operator_umask is not None:
        return _operator_umask
    current = os.umask(0)
    os.umask(current)
    return current


def private_file(path: Path) -> None:
    """Create ``path`` empty and 0600 if it does not exist, else take group and other
    bits off it (for a file a library is about to create with its own default mode)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        _tighten(path)


def _tighten(path: Path) -> None:
    """Take group and other permissions off ``path`` (not following a symlink)."""
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
            return
        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
    except FileNotFoundError:
        return
    except OSError as exc:  # another user's file, a read-only mount: say so, go on
        log.warning("datadir.not_private", path=str(path), error=str(exc))
