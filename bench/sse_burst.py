"""A burst of event streams from one organization: can everyone else still get in?

    .venv/bin/python -m bench.sse_burst [--streams 2000] [--runs 20] [--hold 20]
                                        [--control] [--store sqlite|postgres]

Organization A opens ``--streams`` SSE connections at once, spread round-robin over
connection tokens (``?token=``) of ``--runs`` of its queued runs, from a separate client
process, and holds the ones it gets for ``--hold`` seconds. Meanwhile this process asks
``/healthz`` and organization B's ``GET /v1/runs`` one after the other, each with a 30 s
timeout, and records their latency and status; before the burst it takes the same
samples on the idle API as a baseline. With ``--control`` the same connections then ask
for their run's status instead (plain requests, the cost of any burst that size, for
comparison). Everything is on loopback, every loop is bounded, and the stack is torn
down at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import httpx

from bench._harness import add_store_argument, report, running_stack, summary
from runyard.db.engine import Database
from runyard.settings import async_store_url
from runyard.store.orgs import create_key, ensure_org


async def _open(port: int, path: str, hold_until: float) -> str:
    """One stream: its status ("200", "429" …, or the error's name)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
    except (OSError, TimeoutError) as exc:
        return type(exc).__name__
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        status = head.split(b" ", 2)[1].decode()
        while status == "200" and time.time() < hold_until:  # hold it, reading the pings
            try:
                if not await asyncio.wait_for(reader.read(65536), hold_until - time.time()):
                    break
            except TimeoutError:
                break
        return status
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        return type(exc).__name__
    finally:
        writer.close()


def _clients_main(port: int, paths: list[str], hold: float, out: str) -> None:
    async def main() -> None:
        hold_until = time.time() + hold
        statuses = await asyncio.gather(*(_open(port, p, hold_until) for p in paths))
        counts: dict[str, int] = {}
        for s in statuses:
            counts[s] = counts.get(s, 0) + 1
        await asyncio.to_thread(Path(out).write_text, json.dumps(counts))

    asyncio.run(main())


async def _sample(
    client: httpx.AsyncClient, path: str, until: float, out: list[float], codes: dict[str, int]
) -> None:
    while time.monotonic() < until:
        t0 = time.perf_counter()
        try:
            code = str((await client.get(path)).status_code)
        except httpx.HTTPError as exc:
            code = type(exc).__name__
        out.append((time.perf_counter() - t0) * 1000)
        codes[code] = codes.get(code, 0) + 1
        await asyncio.sleep(0.05)


async def _samples(
    health: httpx.AsyncClient, other: httpx.AsyncClient, seconds: float, name: str
) -> dict[str, Any]:
    until = time.monotonic() + seconds
    h: list[float] = []
    o: list[float] = []
    hc: dict[str, int] = {}
    oc: dict[str, int] = {}
    await asyncio.gather(
        _sample(health, "/healthz", until, h, hc), _sample(other, "/v1/runs", until, o, oc)
    )
    return {
        f"{name}: /healthz ms": summary(h),
        f"{name}: /healthz status": hc,
        f"{name}: other org's list ms": summary(o),
        f"{name}: other org's list status": oc,
    }


async def _burst(
    port: int,
    paths: list[str],
    hold: float,
    health: httpx.AsyncClient,
    other: httpx.AsyncClient,
    name: str,
) -> dict[str, Any]:
    out = f"/tmp/sse-burst-{os.getpid()}-{name}.json"
    proc = mp.get_context("spawn").Process(target=_clients_main, args=(port, paths, hold, out))
    proc.start()
    rows = await _samples(health, other, hold, name)
    await asyncio.to_thread(proc.join, 120)
    if proc.is_alive():
        proc.terminate()
        proc.join(10)
    rows[f"{name}: answers"] = json.loads(Path(out).read_text())
    return rows


async def main(streams: int, runs: int, hold: float, store: str, control: bool) -> None:
    rows: dict[str, Any] = {"store": store, "streams": streams, "runs": runs}
    async with running_stack(store) as (stack, key, _):
        db = Database(async_store_url(stack.env["RUNYARD_DATABASE_URL"]))
        async with db.write() as s:
            other_org = await ensure_org(s, "bench-other")
            other_key, _ = await create_key(s, other_org.id, ["runs:read", "runs:write"])
        await db.dispose()
        limits = httpx.Limits(max_connections=4)
        async with (
            httpx.AsyncClient(
                base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as a,
            httpx.AsyncClient(
                base_url=stack.api_url,
                headers={"Authorization": f"Bearer {other_key}"},
                timeout=30,
                limits=limits,
            ) as b,
            httpx.AsyncClient(base_url=stack.api_url, timeout=30, limits=limits) as h,
        ):
            tokens: list[tuple[str, str]] = []
            for _ in range(runs):
                run = await a.post("/v1/runs", json={"prompt": "bench", "model": "scripted"})
                run_id = run.json()["id"]
                tok = (await a.get(f"/v1/runs/{run_id}/connection-token")).json()["token"]
                tokens.append((run_id, tok))
            for _ in range(5):
                await b.post("/v1/runs", json={"prompt": "bench", "model": "scripted"})
            rows |= await _samples(h, b, 3, "idle")
            paths = [
                f"/v1/runs/{run_id}/events?token={tok}"
                for i in range(streams)
                for run_id, tok in [tokens[i % len(tokens)]]
            ]
            rows |= await _burst(stack.api_port, paths, hold, h, b, "burst")
            if control:  # the same connections asking for each run's status instead
                status_paths = [p.replace("/events?", "/status?") for p in paths]
                rows |= await _burst(stack.api_port, status_paths, hold, h, b, "control")
            for run_id, _tok in tokens:
                await a.post(f"/v1/runs/{run_id}/cancel")
    report(f"sse_burst-{store}", rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=20, help="organization A's runs (tokens)")
    parser.add_argument("--hold", type=float, default=20, help="seconds the streams are held")
    parser.add_argument(
        "--control",
        action="store_true",
        help="then as many plain requests (GET …/status) at once, for comparison",
    )
    add_store_argument(parser)
    args = parser.parse_args()
    asyncio.run(main(args.streams, args.runs, args.hold, args.store, args.control))
