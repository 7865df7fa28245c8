"""HMAC-signed download URLs for the local artifact store, served by the API."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from urllib.parse import quote, urlencode

DOWNLOAD_PREFIX = "/v1/artifact-downloads/"
_DIGITS = re.compile(r"[0-9]{1,12}")
_HEX = re.compile(r"[0-9a-f]{64}")


def _mac(key: bytes, storage_path: str, expires: int) -> str:
    msg = f"{storage_path}\n{expires}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def signed_path(key: bytes, storage_path: str, expires: int) -> str:
    """The API path (with query) that downloads ``storage_path`` until ``expires``."""
    query = urlencode({"expires": expires, "signature": _mac(key, storage_path, expires)})
    return f"{DOWNLOAD_PREFIX}{quote(storage_path)}?{query}"


def verify(key: bytes, storage_path: str, expires: str, signature: str) -> bool:
    """True when the signature is ours for this path and time, and the time is not past."""
    if not _DIGITS.fullmatch(expires) or not _HEX.fullmatch(signature):
        return False
    ok = hmac.compare_digest(_mac(key, storage_path, int(expires)), signature)
    return ok and int(expires) >= int(time.time())
