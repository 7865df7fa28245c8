"""Runs that count their own steps: the fault tests' witness that every step ran once.

Each run appends a distinct line per step to a file in its workspace with ``bash`` (one
step a turn), then counts the distinct lines; a step lost or run twice shows in the
count, the event log or the run's outputs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.conftest import TERMINAL, poll_until, script, wait_for
from tests.integration.test_events import assert_gapless, full_log
from tests.stack import Stack


async def start_counting_runs(
    api: httpx.AsyncClient, runs: int, steps: int, sleep: float
) -> list[str]:
    """Start ``runs`` runs of ``steps`` steps, each turn taking ``sleep`` seconds more."""
    ids = []
    for i in range(runs):
        lines = [
            {"sleep": sleep, "tool": "bash", "input": {"command": f"echo run{i}-step{j} >> log"}}
            for j in range(steps)
        ]
        lines.append({"tool": "bash", "input": {"command": "sort -u log | wc -l"}})
        body = {
            "prompt": script(*lines, {"text": f"run {i} done"}),
            "model": "scripted",
            "start": True,
        }
        resp = await api.post("/v1/runs", json=body)
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["id"])
    return ids


async def assert_each_step_ran_once(
    api: httpx.AsyncClient, stack: Stack, ids: list[str], steps: int
) -> None:
    """Every run completed, its log dense with one terminal event, each step counted
    once, and its sandbox gone."""
    sandboxes = Path(stack.env["RUNYARD_DATA_DIR"]) / "sandboxes"
    for i, run_id in enumerate(ids):
        done = await wait_for(api, run_id, TERMINAL, timeout=120)
        assert done["status"] == "completed", done
        assert done["outputs"] == [{"type": "text", "text": f"run {i} done"}]
        log = await full_log(api, run_id)
        assert_gapless(log)
        last = [e for e in log if e["type"] == "tool.result"][-1]
        assert last["data"]["output"].split("stdout:\n")[1].strip() == str(steps)
        await gone(sandboxes / done["sandbox"]["id"])


async def gone(path: Path, timeout: float = 60) -> None:
    """The sandbox's destroy runs beside the run's terminal write and may be retried on
    another worker after a kill: the directory goes soon after the run completes."""
    await poll_until(
        lambda: asyncio.sleep(0, not path.exists()), f"{path} removed", timeout, every=0.1
    )
