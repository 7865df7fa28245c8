"""What the benchmarks share: a real stack (Temporal dev server, worker, API) on free ports.

Run every benchmark from the repository root as a module: ``python -m bench.NAME``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from runyard.db.engine import Database, migrate
from runyard.devserver import DevServerConfig, free_port, start_dev_server, wait_for_port
from runyard.settings import async_store_url
from runyard.store.orgs import create_key, ensure_org
from tests.stack import Stack

ROOT = Path(__file__).resolve().parent.parent


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
STORES = ("sqlite", "postgres")


@contextmanager
def store_url(store: str, data: Path) -> Iterator[str]:
    """The store of a benchmark stack: SQLite in its data dir, or a fresh database on the
    local Postgres (127.0.0.1:5432, trust auth), dropped afterwards."""
    if store == "sqlite":
        yield f"sqlite:///{data / 'runyard.db'}"
        return
    import psycopg

    name = "runyard_bench_" + secrets.token_hex(4)
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", choices=STORES, default="sqlite", help="the stack's store")


@asynccontextmanager
async def running_stack(store: str = "sqlite", **env: str) -> AsyncIterator[tuple[Stack, str, str]]:
    """Yields (stack, api key, temporal address)."""
    data = Path(tempfile.mkdtemp(prefix="runyard-bench-"))
    with store_url(store, data) as db_url:
        async with _stack(data, db_url, **env) as running:
            yield running


@asynccontextmanager
async def _stack(data: Path, db_url: str, **env: str) -> AsyncIterator[tuple[Stack, str, str]]:
    cfg = DevServerConfig.load()
    cfg.port, cfg.headless, cfg.log_level = free_port(), True, "error"
    temporal = start_dev_server(cfg, data / "temporal")
    wait_for_port(cfg.ip, cfg.port, timeout=60, proc=temporal)
    stack_env = {
        "RUNYARD_DATA_DIR": str(data),
        "RUNYARD_DATABASE_URL": db_url,
        "TEMPORAL_ADDRESS": cfg.address,
        "RUNYARD_TASK_QUEUE": "bench-" + secrets.token_hex(3),
        "RUNYARD_MAX_ACTIVE_RUNS": "100000",
        "RUNYARD_RATE_LIMIT_PER_MINUTE": "10000000",
        # bench.overhead follows 200 runs' event streams at once with one key.
        "RUNYARD_MAX_STREAMS_PER_KEY": "100000",
        "RUNYARD_MAX_STREAMS_PER_ORG": "100000",
        "RUNYARD_LOG_LEVEL": "WARNING",
        **env,
    }
    migrate(async_store_url(db_url))
    db = Database(async_store_url(db_url))
    async with db.write() as s:
        org = await ensure_org(s, "bench")
        key, _ = await create_key(s, org.id, ["runs:read", "runs:write"])
    await db.dispose()
    stack = Stack(stack_env, data / "logs")
    stack.temporal_pid = temporal.pid
    stack.start_worker()
    stack.start_api()
    try:
        yield stack, key, cfg.address
    finally:
        stack.stop()
        os.killpg(temporal.pid, signal.SIGTERM)
        temporal.wait(10)


def cpu_ms(pid: int | None = None) -> float:
    """CPU time (user + system) a process has used, in ms: ``pid``'s from /proc, or this
    process's. Linux only, as are the stacks these benchmarks start."""
    if pid is None:
        t = os.times()
        return (t.user + t.system) * 1000
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def cpu_probe(pid: int | None) -> Callable[[], float]:
    """A probe of ``pid``'s CPU in ms (None: this process), for before/after deltas."""
    return lambda: cpu_ms(pid)


class RawClient:
    """One keep-alive HTTP/1.1 connection with almost no client-side cost (httpx's async
    client saturates at a few hundred requests per second here, and its connection pool
    costs more the more requests are in flight: it would be measured instead of the
    server). Bodies by Content-Length or chunked (an event stream, read to its end)."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", accept: str | None = None
    ) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        reader = self.reader
        assert reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\n{self.extra}"
        if accept:
            head += f"Accept: {accept}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await reader.readline()
        length, chunked = 0, False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding":
                chunked = "chunked" in value.lower()
        if not chunked:
            return int(status_line.split()[1]), await reader.readexactly(length)
        parts = []
        while size := int((await reader.readline()).split(b";")[0], 16):
            parts.append((await reader.readexactly(size + 2))[:-2])  # the chunk, less CRLF
        await reader.readline()  # the empty line after the last chunk (no trailers)
        return int(status_line.split()[1]), b"".join(parts)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def machine_ms() -> float:
    """Busy CPU of the whole machine, in ms: every CPU's user, nice, system, irq, softirq
    and steal time from /proc/stat. It counts what per-process figures miss: a process
    killed before it was reaped (its CPU never reaches its parent's children), and the
    kernel's own threads (loop devices, mounts, namespaces' clean-up)."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(v) - v[3] - v[4]) * 1000 / os.sysconf("SC_CLK_TCK")


async def background_ms_per_s(seconds: float = 3.0, settle: float = 10.0) -> float:
    """The machine's busy CPU per second of wall time while the benchmark does nothing
    (the machine's other services, and an idle stack's pollers once it has started), to
    subtract from ``machine_ms`` deltas.

    It first waits, at most ``settle`` seconds, until two seconds alike read the lowest
    CPU seen: a stack's start-up (and after runs, the kernel's clean-up of sandboxes and
    the server's deferred work) is not background; subtracted from every run, it made the
    machine's figures too small (bench.cost's "other" read below zero). Measure it before
    the runs: their deferred work is their cost."""
    deadline = time.perf_counter() + settle
    seen = [await _busy_ms_per_s(1.0)]
    while time.perf_counter() < deadline:
        seen.append(await _busy_ms_per_s(1.0))
        if abs(seen[-1] - seen[-2]) <= 10 and max(seen[-2:]) <= min(seen) + 10:
            break  # two quiet seconds alike, at the lowest seen
    return await _busy_ms_per_s(seconds)


async def _busy_ms_per_s(seconds: float) -> float:
    m0, t0 = machine_ms(), time.perf_counter()
    await asyncio.sleep(seconds)
    return (machine_ms() - m0) / (time.perf_counter() - t0)


def machine_probe(background: float) -> Callable[[], float]:
    """A probe of the whole machine's busy CPU less its background (``background`` ms a
    second of wall time): the difference of two readings is what ran in between."""
    return lambda: machine_ms() - background * time.perf_counter()


def children_ms(pid: int) -> float:
    """CPU of ``pid``'s reaped children (cutime + cstime), in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) * 1000 / os.sysconf("SC_CLK_TCK")


def postgres_ms() -> float:
    """CPU of this machine's PostgreSQL, in ms: every live ``postgres`` process's, and
    the postmaster's reaped children's (backends that have exited). 0 where none runs."""
    procs: dict[str, tuple[str, list[str]]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, _, rest = stat.read_text().partition("(")[2].rpartition(")")
        except OSError:  # gone since the listing
            continue
        procs[stat.parent.name] = (name, rest.split())
    ticks = 0
    for name, fields in procs.values():
        if name != "postgres":
            continue
        ticks += int(fields[11]) + int(fields[12])
        if procs.get(fields[1], ("",))[0] != "postgres":  # the postmaster
            ticks += int(fields[13]) + int(fields[14])
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """A process's resident memory now, in KiB (/proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p99": percentile(values, 99),
        "min": min(values),
        "max": max(values),
    }


def report(name: str, rows: dict[str, Any]) -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=2))
    print(f"\n{name}")
    for key, value in rows.items():
        if isinstance(value, dict):
            cells = "  ".join(
                f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items()
            )
            print(f"  {key:<32} {cells}")
        else:
            print(f"  {key:<32} {value}")
    print(f"  (JSON: bench/results/{name}.json)")


async def wait_terminal(client: Any, run_id: str, poll: float = 0.005) -> dict[str, Any]:
    while True:
        body: dict[str, Any] = (await client.get(f"/v1/runs/{run_id}/status")).json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        await asyncio.sleep(poll)


async def follow_to_end(client: Any, run_id: str) -> dict[str, Any]:
    """Wait for the run's end as a client watching it live does: its event stream (SSE),
    which the API closes after the terminal event; then its status, once."""
    async with client.stream(
        "GET", f"/v1/runs/{run_id}/events", headers={"Accept": "text/event-stream"}
    ) as resp:
        assert resp.status_code == 200, resp.status_code
        async for _ in resp.aiter_raw():
            pass
    body: dict[str, Any] = (await client.get(f"/v1/runs/{run_id}/status")).json()
    return body
