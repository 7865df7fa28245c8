"""Time from exec to completed for a 5-tool scripted run (median of 20), on a real stack.

.venv/bin/python bench/run_latency.py [--runs 20] [--tools 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx

from bench._harness import report, running_stack, summary, wait_terminal


def five_tool_script(tools: int) -> str:
    lines = [{"tool": "bash", "input": {"command": f"echo {i}"}} for i in range(tools)]
    lines.append({"text": "done"})
    return "#!scripted\n" + "\n".join(json.dumps(x) for x in lines)


async def main(runs: int, tools: int) -> None:
    async with running_stack() as (stack, key, _):
        async with httpx.AsyncClient(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as c:
            wall: list[float] = []
            server: list[float] = []
            for i in range(runs + 3):  # three warm-up runs are not counted
                run = (
                    await c.post(
                        "/v1/runs", json={"prompt": five_tool_script(tools), "model": "scripted"}
                    )
                ).json()
                t0 = time.perf_counter()
                assert (await c.post(f"/v1/runs/{run['id']}/exec")).status_code == 202
                status = await wait_terminal(c, run["id"])
                elapsed = (time.perf_counter() - t0) * 1000
                assert status["status"] == "completed", status
                if i >= 3:
                    wall.append(elapsed)
                    server.append(float(status["durationMs"]))
    report(
        "run_latency",
        {
            f"exec -> completed, {tools} tools (ms)": summary(wall),
            "server durationMs (ms)": summary(server),
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--tools", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.tools))
