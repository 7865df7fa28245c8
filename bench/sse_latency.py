"""Latency from an event's commit to its arrival at SSE clients, 1 and 500 streams.

    .venv/bin/python -m bench.sse_latency [--events 1000] [--streams 1 500] [--rate 200]
                                          [--store sqlite|postgres]

A producer commits events one per transaction into the store (as a worker streaming
deltas does) and records each commit time; the clients, in a separate process so they
do not share the producer's CPU, hold raw-socket SSE connections to one API process
and record each arrival. The API process's CPU time and peak RSS come from /proc.
Each case waits 3 s after its clients connect before the first event (start-up noise).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.orm import Session

from bench._harness import (
    add_store_argument,
    cpu_ms,
    percentile,
    report,
    rss_kib,
    running_stack,
)
from runyard.db.engine import Database
from runyard.settings import async_store_url
from runyard.store.events import NewEvent, append_events, lock_run

_DATA = re.compile(rb'data: \{"seq":(\d+),')


async def _client(port: int, key: str, run_id: str, arrivals: dict[int, float], ready: Any) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /v1/runs/{run_id}/events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    buf = b""
    connected = False
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        now = time.time()
        buf += chunk
        if not connected and b": connected" in buf:
            connected = True
            ready()
        for m in _DATA.finditer(buf):
            arrivals.setdefault(int(m.group(1)), now)
        cut = buf.rfind(b"\n\n")
        if cut >= 0:
            buf = buf[cut + 2 :]
        if b"run.cancelled" in chunk:
            break
    writer.close()


def _clients_main(port: int, key: str, run_id: str, n: int, out: str, ready_q: Any) -> None:
    async def main() -> None:
        count = 0

        def ready() -> None:
            nonlocal count
            count += 1
            if count == n:
                ready_q.put("ready")

        arrivals: list[dict[int, float]] = [{} for _ in range(n)]
        await asyncio.gather(*(_client(port, key, run_id, arrivals[i], ready) for i in range(n)))
        payload = json.dumps([{str(k): v for k, v in a.items()} for a in arrivals])
        await asyncio.to_thread(Path(out).write_text, payload)

    asyncio.run(main())


async def one_case(stack: Any, key: str, streams: int, events: int, rate: float) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}
    ) as c:
        run = (await c.post("/v1/runs", json={"prompt": "bench", "model": "scripted"})).json()
        out = f"/tmp/sse-bench-{os.getpid()}-{streams}.json"
        ready_q: Any = mp.get_context("spawn").Queue()
        proc = mp.get_context("spawn").Process(
            target=_clients_main, args=(stack.api_port, key, run["id"], streams, out, ready_q)
        )
        proc.start()
        ready_q.get(timeout=120)
        await asyncio.sleep(3)  # let the freshly started processes settle; not measured
        db = Database(async_store_url(stack.env["RUNYARD_DATABASE_URL"]))
        cpu0 = cpu_ms(stack.api.pid)
        t_start = time.monotonic()
        commits: dict[int, float] = {}
        interval = 1 / rate
        for i in range(events):

            def append(s: Session, i: int = i) -> list[int]:
                locked = lock_run(s, run["id"])
                assert locked is not None
                event = NewEvent(f"b{i}", "message.delta", {"text": "x" * 40})
                return append_events(s, locked, [event])

            (seq,) = await db.transact(append)
            commits[seq] = time.time()
            await asyncio.sleep(max(0.0, t_start + (i + 1) * interval - time.monotonic()))
        elapsed = time.monotonic() - t_start
        cpu1, rss = cpu_ms(stack.api.pid), rss_kib(stack.api.pid)
        await c.post(f"/v1/runs/{run['id']}/cancel")
        await asyncio.to_thread(proc.join, 120)
        await db.dispose()
    arrivals = json.loads(await asyncio.to_thread(Path(out).read_text))
    lat = [
        (a[str(seq)] - t) * 1000 for a in arrivals for seq, t in commits.items() if str(seq) in a
    ]
    missing = sum(1 for a in arrivals for seq in commits if str(seq) not in a)
    status = await asyncio.to_thread(Path(f"/proc/{stack.api.pid}/status").read_text)
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return {
        "streams": streams,
        "events": events,
        "deliveries": len(lat),
        "missing": missing,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "max_ms": max(lat),
        "api_cpu_percent": 100 * (cpu1 - cpu0) / 1000 / elapsed,
        "api_rss_mib": rss / 1024,
        "api_peak_rss_mib": hwm / 1024,
    }


async def main(events: int, streams: list[int], rate: float, store: str) -> None:
    rows: dict[str, Any] = {"store": store}
    # Every stream is one key's, on one run: lift the per-process stream caps above them.
    caps = str(max(streams))
    async with running_stack(
        store,
        RUNYARD_MAX_STREAMS_PER_TOKEN=caps,
        RUNYARD_MAX_STREAMS_PER_KEY=caps,
        RUNYARD_MAX_STREAMS_PER_ORG=caps,
    ) as (stack, key, _):
        for n in streams:
            rows[f"{n} stream(s)"] = await one_case(stack, key, n, events, rate)
    report(f"sse_latency-{store}", rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 500])
    parser.add_argument("--rate", type=float, default=200, help="events committed per second")
    add_store_argument(parser)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.streams, args.rate, args.store))
