"""Start-up's objects are kept out of the collector's scans, once per process."""

from __future__ import annotations

import subprocess
import sys


def test_freeze_heap_freezes_once() -> None:
    code = (
        "import gc\n"
        "from runyard.gc_tuning import freeze_heap\n"
        "assert gc.get_freeze_count() == 0\n"
        "freeze_heap()\n"
        "n = gc.get_freeze_count()\n"
        "assert n > 0, n\n"
        "keep = [[] for _ in range(1000)]\n"
        "freeze_heap()\n"
        "assert gc.get_freeze_count() == n, (gc.get_freeze_count(), n)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
