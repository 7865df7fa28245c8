"""The server's signing secret (``RUNYARD_SECRET_KEY``): connection tokens, signed URLs.

Unset, it is generated once into ``<data dir>/secret_key`` (mode 0600) and read from
there by every process that shares the data dir. Replicas on different machines must be
given the same ``RUNYARD_SECRET_KEY``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from runyard.settings import Settings

SECRET_FILE = "secret_key"


def load_secret_key(settings: Settings) -> bytes:
    """The secret as bytes: the setting when given, else the data dir's file (made if absent)."""
    if settings.secret_key is not None:
        value = settings.secret_key.get_secret_value()
        if len(value) < 32:
            raise ValueError("RUNYARD_SECRET_KEY must be at least 32 characters long")
        return value.encode()
    path = settings.data_dir.resolve() / SECRET_FILE
    if not path.exists():
        _create(path)
    value = path.read_text().strip()
    if len(value) < 32:
        raise ValueError(f"{path} holds no usable secret (at least 32 characters)")
    return value.encode()


def _create(path: Path) -> None:
    # Written to a private temporary file, then linked into place: link() fails if another
    # process got there first, so two processes starting at once agree on one secret, and
    # no reader ever sees a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def secret_key(settings: Settings) -> bytes:
    """The same secret, under the name the artifact signer uses."""
    return load_secret_key(settings)
