"""Cost per run and per turn: the CPU a scripted run and each extra turn costs, against
bare Temporal on the same server (issue 28).

    .venv/bin/python -m bench.cost [--runs 10] [--store sqlite|postgres]

Four kinds of single runs, alternating (bare 15, Runyard 5 tools, bare 55, Runyard 25
tools, repeated ``runs`` times; the machine is shared, so each figure is taken beside
the others in the same minute):

- bare K: bench/bare_workflow.py, a signal then K no-op activities, on its own worker
  in this process (K = 15 and 55: a 5-tool and a 25-tool run's activities before the
  checkpoints of issue 26, provision, N+1 model turns, N tools, collect_outputs,
  destroy_sandbox, finish_run; each turn now adds a checkpoint_workspace activity).
- Runyard N tools: a scripted run over HTTP (create, exec), followed on its event
  stream to its end as a watching client does (one request, not a poll loop: a poller
  measures itself), then its status once. That is its wall time; its CPU is counted
  until its workflow has ended, which is after its sandbox is destroyed (destroy runs
  beside the terminal status).

CPU from /proc of each process over each run: the Temporal server, Runyard's worker
(itself, and its reaped children: bubblewrap and the sandbox's runner, mount and cgroup
tools) and API; for bare, this process (its worker and client). The totals are the whole
machine's busy CPU over the run (/proc/stat), less the machine's background measured on
the idle stack before the warm-up, and for Runyard less its client (this process):
per-process figures miss Postgres and the kernel's work for the sandbox, which Runyard's
row shows as "other". Run it on a quiet machine. The
slope per extra cycle is (25-tool - 5-tool) / 20 for Runyard and (bare 55 - bare 15) /
20 for bare (per extra activity pair, the issue's yardstick). Medians of the per-run
figures; the 1-minute load average is sampled beside each kind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from bench._harness import (
    add_store_argument,
    background_ms_per_s,
    children_ms,
    cpu_ms,
    follow_to_end,
    machine_probe,
    report,
    running_stack,
)
from bench.bare_workflow import BareWorkflow, bare_noop

SMALL, LARGE = 5, 25


def prompt(tools: int) -> str:
    steps = [*({"tool": "bash", "input": {"command": "true"}} for _ in range(tools))]
    return "#!scripted\n" + "\n".join(json.dumps(x) for x in [*steps, {"text": "ok"}])


def activities(tools: int) -> int:
    return 1 + (tools + 1) + tools + 3


async def bare_once(client: Client, k: int) -> None:
    handle = await client.start_workflow(
        BareWorkflow.run, k, id=f"bare-{uuid.uuid4()}", task_queue="bare"
    )
    await handle.signal(BareWorkflow.go)
    await handle.result()


async def runyard_once(c: httpx.AsyncClient, tools: int) -> str:
    """One run, to its terminal status; its id (its workflow's id)."""
    run = (await c.post("/v1/runs", json={"prompt": prompt(tools), "model": "scripted"})).json()
    resp = await c.post(f"/v1/runs/{run['id']}/exec")
    assert resp.status_code == 202, resp.text
    status = await follow_to_end(c, run["id"])
    assert status["status"] == "completed", status
    return str(run["id"])


Sample = dict[str, float]


async def sample(
    once: Callable[[], Awaitable[object]],
    pids: dict[str, int | None],
    worker: int | None,
    background: float,
    settle: Callable[[Any], Awaitable[object]] | None = None,
) -> Sample:
    """One run: its wall time (to its end as the client sees it), each process's CPU and
    the whole machine's (less its background, ``background`` ms a second), in ms, up to
    ``settle(what once returned)``: a Runyard run's workflow ends only once its sandbox
    is destroyed, after the run's terminal status. For a Runyard run (``worker``), also
    the worker's reaped children (bubblewrap and the sandbox's runner), this process (the
    client) and "other": the machine's CPU that none of those counts (Postgres; the
    kernel's work for disk images and namespaces)."""
    before = {name: cpu_ms(pid) for name, pid in pids.items()}
    kids = children_ms(worker) if worker else 0.0
    machine = machine_probe(background)
    client, machine_before = cpu_ms(), machine()
    t0 = time.perf_counter()
    got = await once()
    wall = (time.perf_counter() - t0) * 1000
    if settle is not None:
        await settle(got)
    out = {"wall": wall, "machine": machine() - machine_before}
    for name, pid in pids.items():
        out[name] = cpu_ms(pid) - before[name]
    if worker:
        out["worker children"] = children_ms(worker) - kids
        out["client"] = cpu_ms() - client
        out["other"] = out["machine"] - sum(out[k] for k in [*pids, "worker children", "client"])
    out["load1"] = os.getloadavg()[0]
    return out


def medians(samples: list[Sample]) -> dict[str, float]:
    return {k: round(statistics.median(s[k] for s in samples), 1) for k in samples[0]}


async def main(runs: int, store: str) -> None:
    async with running_stack(store) as (stack, key, address):
        client = await Client.connect(address)
        assert stack.api is not None
        server, worker, api = stack.temporal_pid, stack.workers[0].pid, stack.api.pid
        bare_pids: dict[str, int | None] = {"server": server, "worker+client": None}
        ry_pids: dict[str, int | None] = {"server": server, "worker": worker, "api": api}
        async with (
            Worker(client, task_queue="bare", workflows=[BareWorkflow], activities=[bare_noop]),
            httpx.AsyncClient(
                base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=300
            ) as c,
        ):

            async def closed(run_id: str) -> None:
                await client.get_workflow_handle(run_id).result()

            def kinds(bg: float) -> dict[str, Callable[[], Awaitable[Sample]]]:
                """Each kind of run, measured with the machine's background ``bg``."""
                return {
                    f"bare {activities(SMALL)}": lambda: sample(
                        lambda: bare_once(client, activities(SMALL)), bare_pids, None, bg
                    ),
                    f"runyard {SMALL} tools": lambda: sample(
                        lambda: runyard_once(c, SMALL), ry_pids, worker, bg, closed
                    ),
                    f"bare {activities(LARGE)}": lambda: sample(
                        lambda: bare_once(client, activities(LARGE)), bare_pids, None, bg
                    ),
                    f"runyard {LARGE} tools": lambda: sample(
                        lambda: runyard_once(c, LARGE), ry_pids, worker, bg, closed
                    ),
                }

            # The idle stack's background, once its start-up has settled: measured after
            # the runs, it also held their deferred work (the server's, the kernel's
            # clean-up of sandboxes), which is a cost of the runs, not background.
            bg = await background_ms_per_s()
            for measure in kinds(0.0).values():  # warm-up, twice each
                await measure()
                await measure()
            measured = kinds(bg)
            got: dict[str, list[Sample]] = {k: [] for k in measured}
            for _ in range(runs):
                for name, measure in measured.items():
                    got[name].append(await measure())
    m = {k: medians(v) for k, v in got.items()}
    bs, rs = m[f"bare {activities(SMALL)}"], m[f"runyard {SMALL} tools"]
    bl, rl = m[f"bare {activities(LARGE)}"], m[f"runyard {LARGE} tools"]
    extra = LARGE - SMALL

    def wa(s: dict[str, float]) -> float:
        return s["worker"] + s["api"]

    def total(s: dict[str, float]) -> float:
        """The machine's CPU for the run: bare's includes its worker and client (this
        process); Runyard's leaves out its client (this process)."""
        return s["machine"] - s.get("client", 0.0)

    ry_wall_slope = (rl["wall"] - rs["wall"]) / extra
    bare_wall_slope = (bl["wall"] - bs["wall"]) / extra
    rows: dict[str, object] = {"store": store, "runs per kind": runs, **m}
    rows["machine background (ms of CPU a second)"] = round(bg, 1)
    rows["per extra cycle"] = {
        "worker+api CPU ms (goal <=15)": round((wa(rl) - wa(rs)) / extra, 2),
        "worker children CPU ms": round((rl["worker children"] - rs["worker children"]) / extra, 2),
        "other CPU ms": round((rl["other"] - rs["other"]) / extra, 2),
        "runyard total CPU ms": round((total(rl) - total(rs)) / extra, 2),
        "server CPU ms": round((rl["server"] - rs["server"]) / extra, 2),
        "runyard wall ms": round(ry_wall_slope, 2),
        "bare wall ms per activity pair": round(bare_wall_slope, 2),
        "wall ratio (goal <=1.3)": round(ry_wall_slope / bare_wall_slope, 2),
        "bare total CPU ms per activity pair": round((total(bl) - total(bs)) / extra, 2),
    }
    rows[f"per {SMALL}-tool run"] = {
        "worker+api CPU ms (goal <=200)": round(wa(rs), 1),
        "with worker children": round(wa(rs) + rs["worker children"], 1),
        "other (Postgres, kernel)": round(rs["other"], 1),
        "total runyard CPU ms": round(total(rs), 1),
        "total bare CPU ms": round(total(bs), 1),
        "total ratio runyard/bare (goal <=1.6)": round(total(rs) / total(bs), 2),
        "latency ratio runyard/bare (goal <=1.8)": round(rs["wall"] / bs["wall"], 2),
    }
    report(f"cost-{store}", rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    add_store_argument(parser)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.store))
