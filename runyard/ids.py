"""Prefixed, opaque, URL-safe identifiers (``run_…``, ``org_…``)."""

from __future__ import annotations

import os
import random
import secrets

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_FAST = random.Random(secrets.randbits(128))
# A forked child (a process manager's workers) must not repeat its parent's sequence.
os.register_at_fork(after_in_child=lambda: _FAST.seed(secrets.randbits(128)))


def new_id(prefix: str, length: int = 20) -> str:
    """``length`` base-36 characters (about 103 bits for 20) from one read of the OS's
    random source; the ids of stored objects stay unguessable."""
    n = int.from_bytes(secrets.token_bytes(length * 6 // 8 + 1))
    chars = []
    for _ in range(length):
        n, digit = divmod(n, 36)
        chars.append(_ALPHABET[digit])
    return f"{prefix}_" + "".join(chars)


def new_request_id() -> str:
    """A request id: unique in practice, not secret, so no system call per request."""
    return f"req_{_FAST.getrandbits(96):024x}"
