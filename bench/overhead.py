"""What Runyard costs on top of Temporal: a bare workflow vs a Runyard run, same server.

    .venv/bin/python -m bench.overhead [--latency-runs 30] [--concurrency 50 200]
                                       [--store sqlite|postgres]

(a) BareWorkflow: started, signalled, then K no-op activities, on its own worker.
(b) A Runyard scripted run with the same number of activities, over HTTP: create -> exec
    -> completed (polled). K = the activities of that run: provision, 6 model turns,
    5 tools, collect_outputs, destroy_sandbox, finish_run = 15.
Latency: median of N single runs, (a) and (b) alternating; a run's status is polled every
10 ms. CPU per run, over those same single runs (/proc): the Temporal server's, and bare's
worker and client (this process) against Runyard's worker and API (the polling client in
this process is not counted), and the same over each throughput phase. Throughput on a
machine cannot beat the ratio of the totals once it is CPU-bound.
Throughput: N runs at once, each followed on its event stream to its end, as bare's
client waits on ``result()``, each on a connection of its own (``RawClient``: httpx's
pool cost more CPU the more requests were in flight, 43 ms a run at N=200). Polling
measured the poller: at 10 ms, 50 runs sent the API 5,000 requests a second, more than
it serves; at 250 ms the API still spent 120 ms of CPU a run on polls, as each run lasts
longer the more run at once.
The ceiling above leaves out CPU that shares the machine while Runyard runs and that
bare has no share of, or counts: the client following the runs (this process; bare's
client is counted), the sandboxes and PostgreSQL. Each phase also prints that rest per
run, and the whole machine's busy CPU per run (/proc/stat, less the background measured
before the phases) for bare and for Runyard: the machine ceiling is their ratio, and
the throughput is printed as a share of each ceiling. Only the machine's figure counts
the kernel's work for the sandboxes (disk images, namespaces).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from bench._harness import (
    RawClient,
    add_store_argument,
    background_ms_per_s,
    children_ms,
    cpu_probe,
    machine_probe,
    postgres_ms,
    report,
    running_stack,
    wait_terminal,
)
from bench.bare_workflow import BareWorkflow, bare_noop

K = 15
SSE = "text/event-stream"
PROMPT = "#!scripted\n" + "\n".join(
    json.dumps(x)
    for x in [*({"tool": "bash", "input": {"command": "true"}} for _ in range(5)), {"text": "ok"}]
)


async def bare_once(client: Client) -> float:
    t0 = time.perf_counter()
    handle = await client.start_workflow(
        BareWorkflow.run, K, id=f"bare-{uuid.uuid4()}", task_queue="bare"
    )
    await handle.signal(BareWorkflow.go)
    await handle.result()
    return (time.perf_counter() - t0) * 1000


async def runyard_raw(port: int, headers: dict[str, str]) -> None:
    """One run, created, started and followed on its event stream to its end, on a
    connection of its own with almost no client cost (httpx's pool cost the client 43 ms
    of CPU a run at N=200, which the machine then lacked for the runs)."""
    c = RawClient(port, headers)
    try:
        body = json.dumps({"prompt": PROMPT, "model": "scripted"}).encode()
        status, created = await c.request("POST", "/v1/runs", body)
        assert status == 201, created
        run_id = json.loads(created)["id"]
        status, answer = await c.request("POST", f"/v1/runs/{run_id}/exec")
        assert status == 202, answer
        status, _ = await c.request("GET", f"/v1/runs/{run_id}/events", accept=SSE)
        assert status == 200, status
        status, answer = await c.request("GET", f"/v1/runs/{run_id}/status")
        assert status == 200 and json.loads(answer)["status"] == "completed", answer
    finally:
        c.close()


async def runyard_once(c: httpx.AsyncClient, poll: float = 0.01) -> float:
    """One run, created, started and waited for: its status polled every ``poll``
    seconds (the latency phase; the throughput phases use ``runyard_raw``)."""
    t0 = time.perf_counter()
    run = (await c.post("/v1/runs", json={"prompt": PROMPT, "model": "scripted"})).json()
    resp = await c.post(f"/v1/runs/{run['id']}/exec")
    assert resp.status_code == 202, resp.text
    status = await wait_terminal(c, run["id"], poll=poll)
    assert status["status"] == "completed", status
    return (time.perf_counter() - t0) * 1000


@contextmanager
def cpu_into(totals: dict[str, float], probes: dict[str, Callable[[], float]]) -> Iterator[None]:
    """Add the CPU each probe counted in the block to ``totals``."""
    before = {name: probe() for name, probe in probes.items()}
    yield
    for name, probe in probes.items():
        totals[name] += probe() - before[name]


def per_run(totals: dict[str, float], runs: int) -> dict[str, float]:
    return {name: round(ms / runs, 1) for name, ms in totals.items()}


async def main(latency_runs: int, concurrency: list[int], store: str) -> None:
    async with running_stack(store) as (stack, key, address):
        client = await Client.connect(address)
        async with Worker(
            client, task_queue="bare", workflows=[BareWorkflow], activities=[bare_noop]
        ):
            async with httpx.AsyncClient(
                base_url=stack.api_url,
                headers={"Authorization": f"Bearer {key}"},
                timeout=300,
                limits=httpx.Limits(max_connections=400),
            ) as c:
                background = await background_ms_per_s()  # the idle stack (see bench.cost)
                for _ in range(3):  # warm-up
                    await bare_once(client)
                    await runyard_once(c)
                bare, ry = [], []
                auth = {"Authorization": f"Bearer {key}"}
                assert stack.api is not None
                server, worker, api = stack.temporal_pid, stack.workers[0].pid, stack.api.pid
                bare_pids = {"server": cpu_probe(server), "worker+client": cpu_probe(None)}
                ry_pids = {
                    "server": cpu_probe(server),
                    "worker": cpu_probe(worker),
                    "api": cpu_probe(api),
                }
                # The rest of the machine's CPU while Runyard runs: the client following
                # the runs (this process), the sandboxes (the worker's reaped children),
                # and PostgreSQL. The machine ceiling counts them, as bare's counts its
                # client; the ceiling above does not.
                ry_rest = {
                    "client": cpu_probe(None),
                    "worker children": lambda: children_ms(worker),
                }
                if store == "postgres":
                    ry_rest["postgres"] = postgres_ms
                machine = {"machine": machine_probe(background)}
                bare_cpu = dict.fromkeys(bare_pids, 0.0)
                ry_cpu = dict.fromkeys(ry_pids, 0.0)
                for _ in range(latency_runs):
                    with cpu_into(bare_cpu, bare_pids):
                        bare.append(await bare_once(client))
                    with cpu_into(ry_cpu, ry_pids):
                        ry.append(await runyard_once(c))
                rows: dict[str, object] = {
                    "store": store,
                    "activities per run (K)": K,
                    "latency median bare (ms)": round(statistics.median(bare), 1),
                    "latency median runyard (ms)": round(statistics.median(ry), 1),
                    "latency ratio runyard/bare": round(
                        statistics.median(ry) / statistics.median(bare), 2
                    ),
                    "CPU ms per run, bare": per_run(bare_cpu, latency_runs),
                    "CPU ms per run, runyard": per_run(ry_cpu, latency_runs),
                    "CPU total ratio bare/runyard": round(
                        sum(bare_cpu.values()) / sum(ry_cpu.values()), 2
                    ),
                }
                for n in concurrency:
                    bare_n_cpu, ry_n_cpu, rest_n_cpu = (
                        dict.fromkeys(bare_pids, 0.0),
                        dict.fromkeys(ry_pids, 0.0),
                        dict.fromkeys(ry_rest, 0.0),
                    )
                    bare_m, ry_m = {"machine": 0.0}, {"machine": 0.0}
                    t0 = time.perf_counter()
                    with cpu_into(bare_n_cpu, bare_pids), cpu_into(bare_m, machine):
                        await asyncio.gather(*(bare_once(client) for _ in range(n)))
                    bare_tp = n / (time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    with (
                        cpu_into(ry_n_cpu, ry_pids),
                        cpu_into(rest_n_cpu, ry_rest),
                        cpu_into(ry_m, machine),
                    ):
                        results = await asyncio.gather(
                            *(runyard_raw(stack.api_port, auth) for _ in range(n)),
                            return_exceptions=True,
                        )
                    failed = [r for r in results if isinstance(r, BaseException)]
                    ry_tp = (n - len(failed)) / (time.perf_counter() - t0)
                    rows[f"runyard runs failed N={n}"] = (
                        f"{len(failed)} ({type(failed[0]).__name__}: {failed[0]})" if failed else 0
                    )
                    rows[f"throughput N={n} bare (runs/s)"] = round(bare_tp, 2)
                    rows[f"throughput N={n} runyard (runs/s)"] = round(ry_tp, 2)
                    rows[f"throughput ratio N={n} runyard/bare"] = round(ry_tp / bare_tp, 2)
                    rows[f"CPU ms per run N={n}, bare"] = per_run(bare_n_cpu, n)
                    rows[f"CPU ms per run N={n}, runyard"] = per_run(ry_n_cpu, n)
                    ceiling = sum(bare_n_cpu.values()) / sum(ry_n_cpu.values())
                    rows[f"CPU total ratio N={n} bare/runyard"] = round(ceiling, 2)
                    rows[f"throughput / ceiling N={n}"] = round(ry_tp / bare_tp / ceiling, 2)
                    # What the machine spent beyond the processes above: the client, the
                    # worker's reaped children (bubblewrap and the sandboxes' runners),
                    # Postgres, and the rest (the kernel's work).
                    rest_n_cpu["other"] = (
                        ry_m["machine"] - sum(ry_n_cpu.values()) - sum(rest_n_cpu.values())
                    )
                    rows[f"CPU ms per run N={n}, the rest"] = per_run(rest_n_cpu, n)
                    bare_machine, ry_machine = bare_m["machine"] / n, ry_m["machine"] / n
                    rows[f"machine CPU ms per run N={n}"] = {
                        "bare": round(bare_machine, 1),
                        "runyard": round(ry_machine, 1),
                    }
                    ratio = bare_machine / ry_machine
                    rows[f"machine CPU ratio N={n} bare/runyard"] = round(ratio, 2)
                    rows[f"throughput / machine ceiling N={n}"] = round(ry_tp / bare_tp / ratio, 2)
    report(f"overhead-{store}", rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[50, 200])
    add_store_argument(parser)
    args = parser.parse_args()
    asyncio.run(main(args.latency_runs, args.concurrency, args.store))
