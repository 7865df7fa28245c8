"""The blocking client is generated from the async one: the file on disk must be current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sync_client_is_generated_from_async_client() -> None:
    check = [sys.executable, str(ROOT / "scripts" / "gen_sync_client.py"), "--check"]
    done = subprocess.run(check, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
