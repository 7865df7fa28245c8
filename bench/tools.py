"""Tool calls in a local sandbox: ``run_tool`` latency of ``true`` and the worker's RSS.

.venv/bin/python -m bench.tools [--runs 200] [--sandbox-dir DIR]

Measures what the ``run_tool`` activity does per call minus Temporal and the store:
``provider.get`` then ``runyard.tools.run_tool``. The first call is left out (it may
start the sandbox's process). Then: the process's RSS growth from ``read_file`` of a
1 GiB sparse file, and the time a FIFO ``read_file`` takes to fail.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import tempfile
import time
from pathlib import Path

from bench._harness import report, summary
from runyard.sandbox.base import SandboxSpec
from runyard.sandbox.local import LocalSandboxProvider
from runyard.tools import run_tool


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def main(runs: int, sandbox_dir: str | None) -> None:
    where = Path(sandbox_dir or tempfile.mkdtemp(prefix="runyard-tools-bench-")) / "sbx"
    provider = LocalSandboxProvider(where, bwrap=shutil.which("bwrap"))
    sid = "sbx_toolbench"
    await provider.create(sid, SandboxSpec(size="s"))
    latencies = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        sandbox = await provider.get(sid)
        out = await run_tool(sandbox, "bash", {"command": "true"}, timeout=30)
        elapsed = (time.perf_counter() - t0) * 1000
        assert not out.is_error, out
        if i:
            latencies.append(elapsed)
    sandbox = await provider.get(sid)
    await run_tool(sandbox, "bash", {"command": "truncate -s 1G big && mkfifo f"}, timeout=30)
    rss0, peak0 = _rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    big = await run_tool(sandbox, "read_file", {"path": "big"}, timeout=60)
    read_ms = (time.perf_counter() - t0) * 1000
    rss1, peak1 = _rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    try:
        fifo = await asyncio.wait_for(run_tool(sandbox, "read_file", {"path": "f"}, timeout=30), 10)
        fifo_result = ("error: " if fifo.is_error else "") + fifo.text[:80]
    except TimeoutError:
        fifo_result = "blocked (gave up after 10 s; the worker thread stays blocked)"
    fifo_ms = (time.perf_counter() - t0) * 1000
    # Six other sandboxes read a FIFO and a 1 GiB file every 100 ms meanwhile (six runs
    # whose agent does that): 'true' here must not notice.
    others = [f"sbx_fifo{i}" for i in range(6)]
    for other in others:
        sb = await provider.create(other, SandboxSpec(size="s"))
        await sb.exec("mkfifo f && truncate -s 1G big", timeout=30)
    stop = asyncio.Event()

    async def hammer(other: str) -> int:
        n = 0
        while not stop.is_set():
            sb = await provider.get(other)
            for path in ("f", "big"):
                await run_tool(sb, "read_file", {"path": path}, timeout=30)
                n += 1
            await asyncio.sleep(0.1)
        return n

    tasks = [asyncio.create_task(hammer(o)) for o in others]
    loaded = []
    for _ in range(min(runs, 100)):
        t0 = time.perf_counter()
        sandbox = await provider.get(sid)
        out = await run_tool(sandbox, "bash", {"command": "true"}, timeout=30)
        loaded.append((time.perf_counter() - t0) * 1000)
    stop.set()
    fifo_reads = sum(await asyncio.gather(*tasks))
    rss_after = _rss_mb()
    for other in [sid, *others]:
        await provider.destroy(other)
    shutil.rmtree(where.parent, ignore_errors=True)
    report(
        "tools",
        {
            "sandbox dir": str(where.parent),
            "run_tool bash 'true', after the first (ms)": summary(latencies),
            "read_file 1 GiB sparse: ms": round(read_ms, 1),
            "read_file 1 GiB sparse: RSS growth (MB)": round(rss1 - rss0, 1),
            "read_file 1 GiB sparse: peak RSS growth (MB)": round(peak1 - peak0, 1),
            "read_file 1 GiB sparse: output chars": len(big.text),
            "read_file FIFO": fifo_result,
            "read_file FIFO (ms)": round(fifo_ms, 1),
            "run_tool 'true' while 6 sandboxes read FIFOs every 100 ms (ms)": summary(loaded),
            "FIFO/1 GiB reads done by the 6 meanwhile": fifo_reads,
            "worker RSS at the end (MB)": round(rss_after, 1),
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--sandbox-dir", help="where the sandbox goes (default: a temp dir)")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.sandbox_dir))
