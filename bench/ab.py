"""Before → after on a noisy machine: this checkout against another one, interleaved.

    .venv/bin/python -m bench.ab ../other-checkout [--pairs 3] [--runs 8] [--store sqlite]

A shared 2-core machine drifts: the same commit measured ten minutes apart can differ by
half. So the two checkouts take turns (A, B, A, B …), each round a fresh stack of its
own (this file run with ``--measure`` and that checkout's code first on the path, so its
worker and API run its code), and the table compares the medians of the rounds.

Each round: two warm-up runs of each kind, then ``runs`` scripted runs of 5 and of 25
tool calls, alternating, followed on their event streams as ``bench.cost`` does; per
run, the worker's and the API's CPU (from /proc) and the wall time. The slope per extra
cycle (model turn + tool call) is (25-tool - 5-tool) / 20, as in ``bench.cost``. Make a
checkout of the commit to compare with ``git worktree add ../base <commit>`` (its
``.venv`` may be a link to this one's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench._harness import ROOT, add_store_argument, cpu_ms, report, running_stack
from bench.cost import LARGE, SMALL, runyard_once


async def measure(runs: int, store: str) -> dict[str, float]:
    async with running_stack(store) as (stack, key, _):
        assert stack.api is not None
        pids = (stack.workers[0].pid, stack.api.pid)
        cpu: dict[int, list[float]] = {SMALL: [], LARGE: []}
        wall: dict[int, list[float]] = {SMALL: [], LARGE: []}
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=300) as c:
            for tools in (SMALL, LARGE, SMALL, LARGE):
                await runyard_once(c, tools)
            for _ in range(runs):
                for tools in (SMALL, LARGE):
                    before = sum(cpu_ms(p) for p in pids)
                    t0 = time.perf_counter()
                    await runyard_once(c, tools)
                    wall[tools].append((time.perf_counter() - t0) * 1000)
                    cpu[tools].append(sum(cpu_ms(p) for p in pids) - before)
    small, large = statistics.median(cpu[SMALL]), statistics.median(cpu[LARGE])
    ws, wl = statistics.median(wall[SMALL]), statistics.median(wall[LARGE])
    extra = LARGE - SMALL
    return {
        f"worker+api CPU ms, {SMALL}-tool run": small,
        f"worker+api CPU ms, {LARGE}-tool run": large,
        "worker+api CPU ms per extra cycle": (large - small) / extra,
        f"wall ms, {SMALL}-tool run": ws,
        "wall ms per extra cycle": (wl - ws) / extra,
    }


def round_in(checkout: Path, runs: int, store: str) -> dict[str, float]:
    """One round in ``checkout``: this file, run with that checkout's code first on the
    path (its ``bench`` helpers, and the stack they start runs its worker and API)."""
    out = subprocess.run(
        [sys.executable, __file__, "--measure", "--runs", str(runs), "--store", store],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("other", nargs="?", type=Path, help="the checkout to compare with")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    add_store_argument(parser)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(asyncio.run(measure(args.runs, args.store))))
        return
    if args.other is None:
        parser.error("name the checkout to compare with")
    trees = {"before": args.other.resolve(), "after": ROOT}
    rounds: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for _ in range(args.pairs):
        for name, tree in trees.items():
            rounds[name].append(round_in(tree, args.runs, args.store))
            print(name, json.dumps(rounds[name][-1]), flush=True)
    rows: dict[str, object] = {"store": args.store, "pairs": args.pairs, "runs": args.runs}
    for figure in rounds["before"][0]:
        b = statistics.median(r[figure] for r in rounds["before"])
        a = statistics.median(r[figure] for r in rounds["after"])
        rows[figure] = {"before": round(b, 1), "after": round(a, 1), "ratio": round(a / b, 2)}
    report(f"ab-{args.store}", rows)


if __name__ == "__main__":
    main()
