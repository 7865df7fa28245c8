"""API latency and throughput with 50 concurrent clients, beside a FastAPI hello world
and a reference FastAPI get-run (bench/ref_app.py).

    .venv/bin/python -m bench.api [--clients 50] [--gets 40] [--creates 10] [--rounds 4]
                                  [--store sqlite|postgres]

create-run (POST /v1/runs, queued: a store write and a Temporal workflow start) and
get-run (GET /v1/runs/{id}) against one API process, GET /hello of a hello-world
FastAPI app, and GET /v1/runs/{id} of the reference app (the same bearer key checked
against the same store, the same row read, plain SQL), both served by uvicorn with the
API's options (one process, default loop, warning logs, 75 s keep-alive), all driven by
the same client. Get-run and the reference alternate in ``rounds`` rounds (A/B/A/B, the
machine is shared); each row gives the server process's CPU per request (/proc) and the
load average when it ran.
The create-run reference is a bare ``start_workflow`` of a workflow with one argument,
by the same number of concurrent callers on one Temporal client (as the API has one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from asyncio.subprocess import Process
from collections.abc import Awaitable, Callable

from temporalio.client import Client

from bench._harness import (
    RawClient,
    add_store_argument,
    cpu_ms,
    percentile,
    report,
    running_stack,
)
from bench.bare_workflow import BareWorkflow
from runyard.devserver import free_port, wait_for_port

Call = Callable[[int, int], Awaitable[None]]


async def drive(clients: int, per_client: int, call: Call) -> dict[str, float]:
    latencies: list[float] = []

    async def one(i: int) -> None:
        for j in range(per_client):
            t0 = time.perf_counter()
            await call(i, j)
            latencies.append((time.perf_counter() - t0) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    rps = clients * per_client / (time.perf_counter() - t0)
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99), "rps": rps}


async def serve(app: str, port: int, env: dict[str, str] | None = None) -> Process:
    """``app`` under uvicorn with the API's options (cli/__init__.py ``api``)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--timeout-keep-alive",
        "75",
        env={**os.environ, **(env or {})},
    )
    await asyncio.to_thread(wait_for_port, "127.0.0.1", port, timeout=30)
    return proc


async def measured(clients: int, per_client: int, call: Call, pid: int) -> dict[str, float]:
    """``drive``, plus the server's CPU per request and the 1-minute load average."""
    c0 = cpu_ms(pid)
    row = await drive(clients, per_client, call)
    row["cpu_us_per_req"] = (cpu_ms(pid) - c0) * 1000 / (clients * per_client)
    row["load1"] = os.getloadavg()[0]
    return row


def merged(parts: list[dict[str, float]]) -> dict[str, float]:
    """Rounds of one kind: medians of rps, p99 and CPU; every round's rps listed."""
    out = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
    out["rounds_rps"] = " ".join(f"{p['rps']:.0f}" for p in parts)  # type: ignore[assignment]
    return out


async def main(clients: int, gets: int, creates: int, rounds: int, store: str) -> None:
    port = free_port()
    hello = await serve("bench.hello_app:app", port)
    ref: Process | None = None
    rows: dict[str, object] = {}
    try:
        async with running_stack(store) as (stack, key, address):
            ref_port = free_port()
            ref = await serve(
                "bench.ref_app:app",
                ref_port,
                {"RUNYARD_DATABASE_URL": stack.env["RUNYARD_DATABASE_URL"]},
            )
            assert stack.api is not None
            temporal = await Client.connect(address)
            auth = {"Authorization": f"Bearer {key}"}
            api = [RawClient(stack.api_port, auth) for _ in range(clients)]
            plain = [RawClient(port, {}) for _ in range(clients)]
            refc = [RawClient(ref_port, auth) for _ in range(clients)]
            ids: list[str] = []
            create_body = json.dumps({"prompt": "bench", "model": "scripted"}).encode()

            async def create(i: int, j: int) -> None:
                status, body = await api[i].request("POST", "/v1/runs", create_body)
                assert status == 201, body
                ids.append(json.loads(body)["id"])

            async def get(i: int, j: int) -> None:
                status, _ = await api[i].request(
                    "GET", f"/v1/runs/{ids[(i * gets + j) % len(ids)]}"
                )
                assert status == 200

            async def ref_get(i: int, j: int) -> None:
                status, _ = await refc[i].request(
                    "GET", f"/v1/runs/{ids[(i * gets + j) % len(ids)]}"
                )
                assert status == 200

            async def hi(i: int, j: int) -> None:
                assert (await plain[i].request("GET", "/hello"))[0] == 200

            async def bare_start(i: int, j: int) -> None:
                await temporal.start_workflow(
                    BareWorkflow.run, 1, id=f"bare-{uuid.uuid4()}", task_queue="bench-bare"
                )

            await drive(clients, 2, hi)  # warm-up, not counted
            await drive(5, 2, create)
            await drive(clients, 2, get)
            await drive(clients, 2, ref_get)
            hello_row = await drive(clients, gets, hi)
            per_round = max(1, gets // rounds)
            got, refs = [], []
            for _ in range(rounds):
                got.append(await measured(clients, per_round, get, stack.api.pid))
                refs.append(await measured(clients, per_round, ref_get, ref.pid))
            get_row, ref_row = merged(got), merged(refs)
            create_row = await drive(clients, creates, create)
            await drive(5, 2, bare_start)
            bare_row = await drive(clients, creates, bare_start)
            rows = {
                "store": store,
                "hello world": hello_row,
                "get run": get_row,
                "reference get run": ref_row,
                "get/reference (goal rps>=0.6, p99<=2)": {
                    "rps_ratio": get_row["rps"] / ref_row["rps"],
                    "p99_ratio": get_row["p99_ms"] / ref_row["p99_ms"],
                    "cpu_ratio": get_row["cpu_us_per_req"] / ref_row["cpu_us_per_req"],
                },
                "create run": create_row,
                "bare start_workflow": bare_row,
                "get/hello": {
                    "p99_ratio": get_row["p99_ms"] / hello_row["p99_ms"],
                    "rps_ratio": get_row["rps"] / hello_row["rps"],
                },
                "create/bare start": {
                    "p99_ratio": create_row["p99_ms"] / bare_row["p99_ms"],
                    "rps_ratio": create_row["rps"] / bare_row["rps"],
                },
            }
            for cl in (*api, *plain, *refc):
                cl.close()
    finally:
        for proc in (hello, ref):
            if proc is not None:
                proc.terminate()
                await proc.wait()
    report(f"api-{store}", rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--gets", type=int, default=40)
    parser.add_argument("--creates", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=4)
    add_store_argument(parser)
    args = parser.parse_args()
    asyncio.run(main(args.clients, args.gets, args.creates, args.rounds, args.store))
