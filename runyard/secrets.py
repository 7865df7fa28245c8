"""The install's secret key (``RUNYARD_SECRET_KEY``): signs artifact download URLs (and
any other token that needs one). Generated into the data dir once when unset."""

from __future__ import annotations

import contextlib
import os
import secrets

from runyard.settings import Settings

_FILE = "secret_key"


def secret_key(settings: Settings) -> bytes:
    """The configured key, or the one stored in ``<data dir>/secret_key`` (created 0600 by
    the first process that needs it; every process of the install reads the same)."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path = settings.data_dir.resolve() / _FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    key = path.read_text().strip()
    if not key:  # another process is between create and write: it writes at once
        raise RuntimeError(f"{path} is empty; set RUNYARD_SECRET_KEY or remove the file")
    return key.encode()
