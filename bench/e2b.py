"""Tool calls through the E2B provider against the local fake E2B: what the SDK and the
provider add per call (the network to E2B's cloud comes on top), and the calls each makes.

.venv/bin/python -m bench.e2b [--runs 100]

Per call, as the ``run_tool`` activity does it: ``provider.get`` then
``runyard.tools.run_tool``. Then ``read_file`` of a 1 GiB sparse file (the worker's RSS
growth), a FIFO ``read_file``, and create/pause/resume/destroy.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench._harness import report, summary
from runyard.sandbox.base import SandboxSpec
from runyard.sandbox.e2b import E2BSandboxProvider
from runyard.tools import run_tool
from tests.fakes.e2b_server import FakeE2B


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def main(runs: int) -> None:
    fake = FakeE2B(Path(tempfile.mkdtemp(prefix="runyard-e2b-bench-")))
    fake.start()
    provider = E2BSandboxProvider(api_key=fake.api_key, api_url=fake.url, sandbox_url=fake.url)
    sid = "sbx_e2bbench"
    try:
        t0 = time.perf_counter()
        await provider.create(sid, SandboxSpec())
        create_ms = _ms(t0)
        latencies, tools = [], {}
        for name, args in (
            ("bash", {"command": "true"}),
            ("write_file", {"path": "a.txt", "content": "x" * 1000}),
            ("read_file", {"path": "a.txt"}),
            ("list_files", {}),
        ):
            before = len(fake.requests)
            sandbox = await provider.get(sid)
            out = await run_tool(sandbox, name, args, timeout=30)
            assert not out.is_error, out
            calls = Counter(f"{m} {p.split('/')[-1]}" for m, p in fake.requests[before:])
            tools[f"{name}: calls to E2B"] = dict(calls)
        for _ in range(runs):
            t0 = time.perf_counter()
            sandbox = await provider.get(sid)
            out = await run_tool(sandbox, "bash", {"command": "true"}, timeout=30)
            latencies.append((time.perf_counter() - t0) * 1000)
        sandbox = await provider.get(sid)
        await sandbox.exec("truncate -s 1G big && mkfifo f", timeout=30)
        rss0, peak0 = _rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        big = await run_tool(sandbox, "read_file", {"path": "big"}, timeout=60)
        read_ms = _ms(t0)
        peak1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        fifo = await run_tool(sandbox, "read_file", {"path": "f"}, timeout=30)
        fifo_ms = _ms(t0)
        t0 = time.perf_counter()
        await provider.pause(sid)
        pause_ms = _ms(t0)
        t0 = time.perf_counter()
        await provider.resume(sid)
        resume_ms = _ms(t0)
        t0 = time.perf_counter()
        await provider.destroy(sid)
        destroy_ms = _ms(t0)
        report(
            "e2b",
            {
                "create (ms)": create_ms,
                **tools,
                "get + run_tool bash 'true' (ms)": summary(latencies),
                "read_file 1 GiB sparse: ms": read_ms,
                "read_file 1 GiB sparse: RSS growth (MB)": round(_rss_mb() - rss0, 1),
                "read_file 1 GiB sparse: peak RSS growth (MB)": round(peak1 - peak0, 1),
                "read_file 1 GiB sparse: output chars": len(big.text),
                "read_file FIFO": fifo.text[:80],
                "read_file FIFO (ms)": fifo_ms,
                "pause / resume / destroy (ms)": [pause_ms, resume_ms, destroy_ms],
            },
        )
    finally:
        fake.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    asyncio.run(main(parser.parse_args().runs))
