"""What an idle stack costs: CPU a second of its worker, its API, the Temporal server and
PostgreSQL, and the transactions its store commits a second, with no run anywhere.

    .venv/bin/python -m bench.idle [--seconds 30] [--settle 8] [--store sqlite|postgres]

An idle deployment still polls: the API's event hub (SQLite: its change counter every
20 ms; Postgres: a LISTEN), the worker's outbox pump (SQLite: the same counter every
0.2 s; Postgres: a LISTEN, and a sweep at least every 10 s), heartbeats, Temporal's long
polls. The stack first runs ``--settle`` seconds (its start-up is not idle), then each
process's CPU is read from /proc over ``--seconds``. PostgreSQL's figure is every
``postgres`` process's on this machine (other databases' work included); its
transactions are the stack's own database's (``pg_stat_database.xact_commit``; the
reading itself is one, left out).
"""

from __future__ import annotations

import argparse
import asyncio

from bench._harness import add_store_argument, cpu_probe, postgres_ms, report, running_stack
from tests.stack import Stack


def commits(stack: Stack) -> int | None:
    """Transactions committed so far in the stack's Postgres database (None on SQLite)."""
    url = stack.env["RUNYARD_DATABASE_URL"]
    if not url.startswith("postgresql"):
        return None
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else None


async def main(seconds: float, settle: float, store: str) -> None:
    async with running_stack(store) as (stack, _key, _address):
        assert stack.api is not None and stack.temporal_pid is not None
        pids = {
            "worker": stack.workers[0].pid,
            "api": stack.api.pid,
            "temporal server": stack.temporal_pid,
        }
        await asyncio.sleep(settle)
        probes = {name: cpu_probe(pid) for name, pid in pids.items()}
        if store == "postgres":
            probes["postgres"] = postgres_ms
        before = {name: probe() for name, probe in probes.items()}
        c0 = commits(stack)
        await asyncio.sleep(seconds)
        c1 = commits(stack)
        rows: dict[str, object] = {"store": store, "seconds": seconds}
        for name, probe in probes.items():
            rows[f"{name} CPU ms a second"] = round((probe() - before[name]) / seconds, 1)
        if c0 is not None and c1 is not None:
            rows["store transactions a second"] = round((c1 - c0 - 1) / seconds, 2)
    report(f"idle-{store}", rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=8.0)
    add_store_argument(parser)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.settle, args.store))
