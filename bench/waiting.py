"""Worker memory with many runs waiting for input, and input -> next tool.call latency.

    .venv/bin/python -m bench.waiting [--runs 200] [--answers 100]

Starts a real stack, measures the worker's RSS, starts N runs that each ask a question
and, once all wait, measures it again. Then answers runs one at a time, timing from the
POST /input to the arrival of the run's next tool.call event on its SSE stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx

from bench._harness import report, rss_kib, running_stack, summary

PROMPT = "#!scripted\n" + "\n".join(
    json.dumps(x)
    for x in [{"ask": "Proceed?"}, {"tool": "bash", "input": {"command": "true"}}, {"text": "done"}]
)


async def answer_and_time(c: httpx.AsyncClient, run_id: str) -> float:
    last = len(
        (await c.get(f"/v1/runs/{run_id}/events", headers={"Accept": "application/json"})).json()
    )
    async with c.stream("GET", f"/v1/runs/{run_id}/events", params={"after_seq": last}) as resp:
        lines = resp.aiter_lines()
        assert (await anext(lines)).startswith(": connected")
        t0 = time.perf_counter()
        assert (
            await c.post(f"/v1/runs/{run_id}/input", json={"content": "yes"})
        ).status_code == 200
        async for line in lines:
            if line == "event: tool.call":
                return (time.perf_counter() - t0) * 1000
    raise RuntimeError("stream ended without a tool.call")


async def main(runs: int, answers: int) -> None:
    async with running_stack() as (stack, key, _):
        worker_pid = stack.workers[0].pid
        async with httpx.AsyncClient(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as c:
            warm = (
                await c.post(
                    "/v1/runs", json={"prompt": PROMPT, "model": "scripted", "start": True}
                )
            ).json()
            while (await c.get(f"/v1/runs/{warm['id']}/status")).json()[
                "status"
            ] != "waiting_for_input":
                await asyncio.sleep(0.1)
            await c.post(f"/v1/runs/{warm['id']}/input", json={"content": "go"})
            await asyncio.sleep(2)
            before = rss_kib(worker_pid)
            ids: list[str] = []
            for _ in range(runs):
                body = {"prompt": PROMPT, "model": "scripted", "start": True}
                ids.append((await c.post("/v1/runs", json=body)).json()["id"])
            t0 = time.monotonic()
            while True:
                listing = (
                    await c.get("/v1/runs", params={"status": "waiting_for_input", "limit": 1})
                ).json()
                if listing["pagination"]["total"] >= runs:
                    break
                if time.monotonic() - t0 > 600:
                    raise TimeoutError(f"only {listing['pagination']['total']} runs are waiting")
                await asyncio.sleep(0.5)
            waited = time.monotonic() - t0
            await asyncio.sleep(2)
            after = rss_kib(worker_pid)
            latencies = [await answer_and_time(c, run_id) for run_id in ids[:answers]]
    report(
        "waiting",
        {
            "runs waiting": runs,
            "seconds until all waited": round(waited, 1),
            "worker RSS before (MiB)": round(before / 1024, 1),
            "worker RSS with runs waiting (MiB)": round(after / 1024, 1),
            "worker RSS per waiting run (MiB)": round((after - before) / 1024 / runs, 3),
            "input -> next tool.call (ms)": summary(latencies),
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--answers", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.answers))
