"""Writes ``runyard/client/_sync.py`` (the blocking ``Runyard``) from ``_async.py``.

The two clients are the same code with and without ``async``/``await``; ``unasync``
rewrites the tokens, so a change is made once, in ``_async.py``. Run it after editing the
async client (``python scripts/gen_sync_client.py``); ``--check`` exits 1 when the file
on disk is not what it would write (tests/unit/test_sync_client_generated.py runs it).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import unasync

ROOT = Path(__file__).resolve().parent.parent
ASYNC = ROOT / "runyard" / "client" / "_async.py"
SYNC = ROOT / "runyard" / "client" / "_sync.py"

# Names the async client uses and their blocking twins (besides unasync's own).
REPLACEMENTS = {
    "AsyncRunyard": "Runyard",
    "AsyncClient": "Client",
    "AsyncBaseTransport": "BaseTransport",
    "aclose": "close",
    "aread": "read",
    "aconnect_sse": "connect_sse",
    "aiter_sse": "iter_sse",
    "asleep": "sleep",
}
# What tokens do not cover: the module's docstring.
_ASYNC_DOC = (
    '"""``AsyncRunyard``: the asyncio client, method for method the same as ``Runyard``."""'
)
_SYNC_DOC = (
    '"""``Runyard``: the blocking client, method for method the same as ``AsyncRunyard``.\n\n'
    "Generated from ``_async.py`` by ``scripts/gen_sync_client.py``: do not edit.\n"
    '"""'
)
TEXT = {_ASYNC_DOC: _SYNC_DOC}


def generate() -> str:
    """The text of ``_sync.py``: unasync's rewrite of ``_async.py``, ruff-formatted."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "_async"), Path(tmp, "_sync")
        src.mkdir()
        (src / "client.py").write_text(ASYNC.read_text())
        rule = unasync.Rule(f"{src}/", f"{dst}/", additional_replacements=REPLACEMENTS)
        unasync.unasync_files([str(src / "client.py")], [rule])
        text = (dst / "client.py").read_text()
    for old, new in TEXT.items():
        if old not in text:
            raise SystemExit(f"gen_sync_client: {old!r} is no longer in _async.py")
        text = text.replace(old, new)
    ruff = [sys.executable, "-m", "ruff"]
    fix = [*ruff, "check", "--fix-only", "--quiet", "--stdin-filename", str(SYNC), "-"]
    text = subprocess.run(fix, input=text, text=True, check=True, capture_output=True).stdout
    fmt = [*ruff, "format", "--quiet", "--stdin-filename", str(SYNC), "-"]
    return subprocess.run(fmt, input=text, text=True, check=True, capture_output=True).stdout


def main() -> int:
    text = generate()
    if "--check" in sys.argv[1:]:
        if SYNC.read_text() != text:
            print(f"{SYNC} is stale: run python scripts/gen_sync_client.py", file=sys.stderr)
            return 1
        return 0
    SYNC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
