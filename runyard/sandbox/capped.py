"""Reading a file an agent made, through the ``Sandbox`` protocol, with a byte cap."""

from __future__ import annotations

import shlex

from runyard.sandbox.base import Sandbox


class TooLarge(ValueError):
    pass


async def read_capped(sandbox: Sandbox, path: str, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path`` (not a FIFO, device or symlink), refused
    before reading when it is larger than ``max_bytes``."""
    q = shlex.quote(path)
    res = await sandbox.exec(
        f"if [ -f {q} ] && [ ! -L {q} ]; then stat -c %s -- {q}; else echo none; fi", timeout=30
    )
    size = res.stdout.strip()
    if not size.isdigit():
        raise FileNotFoundError(f"{path}: no such regular file")
    if int(size) > max_bytes:
        raise TooLarge(f"{path} is {int(size)} bytes, more than the limit of {max_bytes}")
    content = await sandbox.read_file(path, max_bytes=max_bytes)
    if content.truncated:  # grew in between
        raise TooLarge(f"{path} is more than the limit of {max_bytes} bytes")
    return content.data
