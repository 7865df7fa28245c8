"""A run from create to a terminal status, over HTTP, with the real worker and Temporal."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import select
from sqlmodel import col
from temporalio.client import WorkflowExecutionStatus

from runyard.db.engine import Database
from runyard.db.tables import RunEvent
from runyard.settings import Settings
from runyard.temporal import connect
from tests.conftest import TERMINAL, poll_until, script, wait_for


async def events_of(db: Database, run_id: str) -> list[RunEvent]:
    async with db.session() as s:
        return list(
            (
                await s.execute(
                    select(RunEvent)
                    .where(col(RunEvent.run_id) == run_id)
                    .order_by(col(RunEvent.seq))
                )
            ).scalars()
        )


def assert_dense_log(events: list[RunEvent]) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    terminal = [e for e in events if e.type in ("run.completed", "run.failed", "run.cancelled")]
    assert len(terminal) == 1 and terminal[0] is events[-1], [e.type for e in events]


async def create(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("model", "scripted")
    resp = await api.post("/v1/runs", json=body)
    assert resp.status_code == 201, resp.text
    result: dict[str, Any] = resp.json()
    return result


async def test_create_exec_complete(api: httpx.AsyncClient, stack_db: Database) -> None:
    run = await create(
        api,
        prompt=script(
            {"tool": "write_file", "input": {"path": "a.txt", "content": "hello"}},
            {"tool": "bash", "input": {"command": "cat a.txt"}},
            {"text": "All done: hello"},
        ),
        metadata={"ticket": "T-1"},
    )
    assert run["status"] == "queued" and run["id"].startswith("run_")
    assert run["workflowId"] == run["id"] and run["metadata"] == {"ticket": "T-1"}
    assert run["guardrails"] == {"maxTurns": 100, "maxCostUsd": 5.0, "timeoutSeconds": 1800}

    resp = await api.post(f"/v1/runs/{run['id']}/exec")
    assert resp.status_code == 202
    assert resp.json()["status"] == "pending" and resp.json()["workflowId"] == run["id"]

    done = await wait_for(api, run["id"], TERMINAL)
    assert done["status"] == "completed", done
    assert done["outputs"] == [{"type": "text", "text": "All done: hello"}]
    assert done["usage"]["turns"] == 3 and done["usage"]["costUsd"] > 0
    assert done["sandbox"]["provider"] == "local" and done["sandbox"]["size"] == "m"
    assert done["completedAt"] and done["startedAt"] and done["durationMs"] >= 0
    assert done["failReason"] is None and done["error"] is None

    status = (await api.get(f"/v1/runs/{run['id']}/status")).json()
    assert status == {
        "id": run["id"],
        "status": "completed",
        "failReason": None,
        "durationMs": done["durationMs"],
        "usage": done["usage"],
    }

    events = await events_of(stack_db, run["id"])
    assert_dense_log(events)
    types = [e.type for e in events]
    assert types[:3] == ["run.created", "run.started", "sandbox.ready"]
    results = [e.data for e in events if e.type == "tool.result"]
    assert "hello" in results[1]["output"] and not results[1]["isError"]


async def test_start_true_runs_at_once(api: httpx.AsyncClient) -> None:
    run = await create(api, prompt=script({"text": "quick"}), start=True)
    assert run["status"] == "pending"
    done = await wait_for(api, run["id"], TERMINAL)
    assert done["status"] == "completed" and done["outputs"][0]["text"] == "quick"
    again = await api.post(f"/v1/runs/{run['id']}/exec")
    assert again.status_code == 409 and again.json()["type"] == "RUN_ALREADY_STARTED"


async def test_exec_twice_and_concurrently(api: httpx.AsyncClient) -> None:
    run = await create(api, prompt=script({"text": "once"}))
    first = await api.post(f"/v1/runs/{run['id']}/exec")
    second = await api.post(f"/v1/runs/{run['id']}/exec")
    assert (first.status_code, second.status_code) == (202, 409)
    assert second.headers["content-type"] == "application/problem+json"
    assert second.json()["type"] == "RUN_ALREADY_STARTED"

    for _ in range(3):  # concurrent execs: exactly one wins, every time
        run = await create(api, prompt=script({"text": "race"}))
        answers = await asyncio.gather(*[api.post(f"/v1/runs/{run['id']}/exec") for _ in range(4)])
        codes = sorted(r.status_code for r in answers)
        assert codes == [202, 409, 409, 409], [r.text for r in answers]
        assert (await wait_for(api, run["id"], TERMINAL))["status"] == "completed"


async def test_cancel_running_sleep(api: httpx.AsyncClient, stack_db: Database, stack: Any) -> None:
    run = await create(
        api,
        prompt=script({"tool": "bash", "input": {"command": "sleep 60"}}, {"text": "never"}),
        start=True,
    )

    async def calling() -> bool:
        return any(e.type == "tool.call" for e in await events_of(stack_db, run["id"]))

    await poll_until(calling, "the sleep's tool call")
    await asyncio.sleep(0.5)  # the sleep is really running in the sandbox
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    resp = await api.post(f"/v1/runs/{run['id']}/cancel")
    assert resp.status_code == 200 and resp.json() == {"id": run["id"], "status": "cancelled"}
    done = await wait_for(api, run["id"], {"cancelled"}, timeout=5)
    assert done["cancelledAt"] is not None
    # The sandbox is destroyed: its directory is gone within seconds.
    sandbox_dir = (
        __import__("pathlib").Path(stack.env["RUNYARD_DATA_DIR"])
        / "sandboxes"
        / done["sandbox"]["id"]
    )

    async def gone() -> bool:
        return not sandbox_dir.exists()

    await poll_until(gone, "the sandbox's removal", timeout=max(0.1, 5 - (loop.time() - t0)))
    # The workflow itself ends cancelled in Temporal, as the run did.
    temporal = await connect(Settings(temporal_address=stack.env["TEMPORAL_ADDRESS"]))

    async def workflow_cancelled() -> bool:
        status = (await temporal.get_workflow_handle(run["id"]).describe()).status
        return status == WorkflowExecutionStatus.CANCELED

    await poll_until(workflow_cancelled, "the workflow's cancellation in Temporal")
    assert_dense_log(await events_of(stack_db, run["id"]))
    # Cancel is idempotent on a terminal run.
    again = await api.post(f"/v1/runs/{run['id']}/cancel")
    assert again.json() == {"id": run["id"], "status": "cancelled"}


async def test_cancel_during_model_sleep(api: httpx.AsyncClient) -> None:
    run = await create(api, prompt=script({"sleep": 30}, {"text": "late"}), start=True)
    await wait_for(api, run["id"], {"running"})
    await asyncio.sleep(0.3)
    t0 = asyncio.get_running_loop().time()
    assert (await api.post(f"/v1/runs/{run['id']}/cancel")).json()["status"] == "cancelled"
    await wait_for(api, run["id"], {"cancelled"}, timeout=5)
    assert asyncio.get_running_loop().time() - t0 < 5


async def test_cancel_queued(api: httpx.AsyncClient) -> None:
    run = await create(api, prompt=script({"text": "x"}))
    assert (await api.post(f"/v1/runs/{run['id']}/cancel")).json()["status"] == "cancelled"
    resp = await api.post(f"/v1/runs/{run['id']}/exec")
    assert resp.status_code == 409 and resp.json()["type"] == "RUN_ALREADY_STARTED"


async def test_max_turns(api: httpx.AsyncClient, stack_db: Database) -> None:
    tools = [{"tool": "bash", "input": {"command": f"echo {i}"}} for i in range(3)]
    run = await create(api, prompt=script(*tools, {"text": "done"}), maxTurns=2, start=True)
    done = await wait_for(api, run["id"], TERMINAL)
    assert (done["status"], done["failReason"]) == ("failed", "max_turns")
    assert done["usage"]["turns"] == 2 and done["failedAt"]
    events = await events_of(stack_db, run["id"])
    assert_dense_log(events)
    guard = [e.data for e in events if e.type == "guardrail.triggered"]
    assert guard == [{"guardrail": "maxTurns", "limit": 2, "value": 2}]
    assert events[-1].data["failReason"] == "max_turns"


async def test_max_cost(api: httpx.AsyncClient) -> None:
    # 1M output tokens of a sonnet-priced model cost $15, over a $1 limit.
    run = await create(
        api,
        prompt=script(
            {"tool": "bash", "input": {"command": "true"}, "usage": {"outputTokens": 1_000_000}},
            {"text": "unreachable"},
        ),
        maxCostUsd=1,
        start=True,
    )
    done = await wait_for(api, run["id"], TERMINAL)
    assert (done["status"], done["failReason"]) == ("failed", "max_cost")
    assert done["usage"]["costUsd"] >= 15 and done["usage"]["turns"] == 1


async def test_timeout(api: httpx.AsyncClient) -> None:
    run = await create(
        api, prompt=script({"sleep": 30}, {"text": "late"}), timeoutSeconds=2, start=True
    )
    done = await wait_for(api, run["id"], TERMINAL, timeout=15)
    assert (done["status"], done["failReason"]) == ("failed", "timeout")


async def test_model_error(api: httpx.AsyncClient) -> None:
    run = await create(api, prompt=script({"fail": "the model broke"}), start=True)
    done = await wait_for(api, run["id"], TERMINAL)
    assert (done["status"], done["failReason"]) == ("failed", "error")
    assert done["error"]["code"] == "MODEL_ERROR" and "the model broke" in done["error"]["message"]


async def test_bad_script_fails_the_run_clearly(api: httpx.AsyncClient) -> None:
    run = await create(api, prompt="#!scripted\n{not json", start=True)
    done = await wait_for(api, run["id"], TERMINAL)
    assert done["error"]["code"] == "MODEL_ERROR" and "line 2" in done["error"]["message"]


async def test_cost_and_cache_usage_from_script(api: httpx.AsyncClient) -> None:
    usage = {
        "inputTokens": 1000,
        "outputTokens": 500,
        "cacheReadTokens": 400,
        "cacheWriteTokens": 0,
    }
    run = await create(api, prompt=script({"text": "ok", "usage": usage}), start=True)
    done = await wait_for(api, run["id"], TERMINAL)
    u = done["usage"]
    assert (u["inputTokens"], u["outputTokens"], u["cacheReadTokens"]) == (1000, 500, 400)
    assert u["cacheHitRate"] == round(400 / 1400, 4)
    assert u["costUsd"] == round((1000 * 3 + 500 * 15 + 400 * 0.3) / 1e6, 6)


async def test_memory_overrun_fails_the_run(api: httpx.AsyncClient, stack: Any) -> None:
    from pathlib import Path

    if not (
        Path("/sys/fs/cgroup/memory").is_dir() or Path("/sys/fs/cgroup/cgroup.controllers").exists()
    ):
        import pytest

        pytest.skip("no cgroups on this machine")
    hog = {"tool": "bash", "input": {"command": "python3 -c 'x = bytearray(5 * 1024**3)'"}}
    run = await create(api, prompt=script(hog, {"text": "unreachable"}), start=True)
    done = await wait_for(api, run["id"], TERMINAL, timeout=60)
    assert (done["status"], done["failReason"]) == ("failed", "error"), done
    assert done["error"]["code"] == "RUN_RESOURCE_LIMIT_EXCEEDED"
