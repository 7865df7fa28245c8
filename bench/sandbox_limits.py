"""What a local sandbox's limits really hold (issue 23, items 1 and 5):

- bytes written through /runyard/remote (the agent's origin) that count against the
  sandbox's disk (``diskMi``): the MiB of a 700 MiB ``dd`` there that ``df /workspace``
  sees used;
- the largest file read out of the sandbox whole (a push's bundle, ``changes.patch``, a
  ``save_artifact`` file), with the artifact limit (100 MiB) as the cap, as
  ``read_capped`` reads it; and what one byte over the limit gets.

.venv/bin/python -m bench.sandbox_limits [--sandbox-dir DIR]

Needs bubblewrap and loop mounts (root). Run from an older checkout (its ``runyard`` on
PYTHONPATH) for the figures before.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from runyard.sandbox import isolation
from runyard.sandbox.base import SandboxSpec
from runyard.sandbox.capped import TooLarge, read_capped
from runyard.sandbox.local import LocalSandbox, LocalSandboxProvider

LIMIT = 100 * 1024 * 1024


async def remote_counted(provider: LocalSandboxProvider, sb: LocalSandbox) -> None:
    on_disk = hasattr(isolation, "writable_dirs")  # older versions: <sandbox>/remote
    bare = (sb.workspace.parent if on_disk else sb.root) / "remote" / "origin.git"
    git = ["git", "init", "-q", "--bare", str(bare)]
    await asyncio.to_thread(subprocess.run, git, check=True)
    await provider.stop_runner(sb.id)  # the next runner binds the remote
    used = "df -B1M --output=used /workspace | tail -1"
    before = int((await sb.exec(used, timeout=10)).stdout)
    big = "/runyard/remote/origin.git/big"
    res = await sb.exec(f"dd if=/dev/zero of={big} bs=1M count=700 status=none; sync", timeout=300)
    assert res.exit_code == 0, res
    after = int((await sb.exec(used, timeout=10)).stdout)
    print(f"written through /runyard/remote: 700 MiB; counted against diskMi: {after - before} MiB")
    await sb.exec(f"rm -f {big}", timeout=30)


async def largest_read(sb: LocalSandbox) -> None:
    async def whole(n: int) -> bool:
        await sb.exec(f"head -c {n} /dev/urandom > f", timeout=120)
        try:
            return len(await read_capped(sb, "f", LIMIT)) == n
        except Exception:  # whatever failed, the file did not come whole
            return False

    t0 = time.perf_counter()
    if await whole(LIMIT):
        print(
            f"largest file read whole: {LIMIT} bytes (the limit), {time.perf_counter() - t0:.1f} s"
        )
        await sb.exec(f"truncate -s {LIMIT + 1} f", timeout=30)
        try:
            await read_capped(sb, "f", LIMIT)
            print("one byte over the limit: read (wrong)")
        except TooLarge as exc:
            print(f"one byte over the limit: TooLarge ({exc})")
        return
    lo, hi = 1 << 20, LIMIT
    while hi - lo > 1024:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if await whole(mid) else (lo, mid)
    print(f"largest file read whole: about {lo} bytes ({lo / 2**20:.2f} MiB)")


async def main(sandbox_dir: str | None) -> None:
    base = Path(sandbox_dir) if sandbox_dir else Path(tempfile.mkdtemp(prefix="runyard-lim-"))
    provider = LocalSandboxProvider(base / "sbx", bwrap=shutil.which("bwrap"))
    sb = await provider.create("sbx_benchlimits", SandboxSpec(size="s"))
    try:
        await remote_counted(provider, sb)
        await largest_read(sb)
    finally:
        await provider.destroy(sb.id)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sandbox-dir")
    asyncio.run(main(parser.parse_args().sandbox_dir))
