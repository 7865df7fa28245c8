"""A template's setup script and network on the real stack: the script's output as
``sandbox.setup`` events before ``sandbox.ready``, a failing script ending the run
``SANDBOX_SETUP_FAILED``, its output capped; ``network: "full"`` behind the operator's
``RUNYARD_SANDBOX_NETWORK`` gate."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from activities.sandbox_setup import SETUP_OUTPUT_BYTES
from tests.conftest import TERMINAL, Keys, launch_stack, script, stack_env, wait_for
from tests.fakes.anthropic_server import FakeAnthropic
from tests.integration.counting_runs import gone
from tests.integration.test_events import assert_gapless, full_log
from tests.stack import Stack


async def template(api: httpx.AsyncClient, **fields: Any) -> str:
    slug = "t-" + secrets.token_hex(4)
    resp = await api.post("/v1/templates", json={"slug": slug, **fields})
    assert resp.status_code == 201, resp.text
    return slug


async def run(api: httpx.AsyncClient, slug: str, *lines: dict[str, Any]) -> dict[str, Any]:
    resp = await api.post(
        "/v1/runs",
        json={"prompt": script(*lines), "model": "scripted", "template": slug, "start": True},
    )
    assert resp.status_code == 201, resp.text
    return await wait_for(api, resp.json()["id"], TERMINAL, timeout=60)


def types(log: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in log]


def tool_outputs(log: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["output"] for e in log if e["type"] == "tool.result"]


async def test_setup_output_is_events_before_the_sandbox_is_ready(
    api: httpx.AsyncClient,
) -> None:
    slug = await template(
        api,
        setupScript="echo installing; echo careful >&2; sleep 1.5; "
        "for i in 1 2 3; do echo step $i; done; echo prepared > .setup-done",
    )
    done = await run(
        api, slug, {"tool": "bash", "input": {"command": "cat .setup-done"}}, {"text": "ok"}
    )
    assert done["status"] == "completed", done
    log = await full_log(api, done["id"])
    assert_gapless(log)
    kinds = types(log)
    setup = [e for e in log if e["type"] == "sandbox.setup"]
    assert len(setup) >= 2  # batched while it runs (the script sleeps past one batch)
    assert kinds.index("run.started") < kinds.index("sandbox.setup")
    assert max(e["seq"] for e in setup) < log[kinds.index("sandbox.ready")]["seq"]
    stdout = "".join(e["data"]["output"] for e in setup if e["data"]["stream"] == "stdout")
    stderr = "".join(e["data"]["output"] for e in setup if e["data"]["stream"] == "stderr")
    assert stdout == "installing\nstep 1\nstep 2\nstep 3\n" and stderr == "careful\n"
    assert setup[-1]["data"]["exitCode"] == 0 and setup[-1]["data"]["timedOut"] is False
    assert "clipped" not in setup[-1]["data"]
    assert tool_outputs(log)[0].endswith("\nprepared\n")  # the agent's workspace is set up


async def test_a_failing_setup_script_fails_the_run(api: httpx.AsyncClient, stack: Stack) -> None:
    slug = await template(api, setupScript="echo resolving; echo 'E: no package foo' >&2; exit 7")
    done = await run(api, slug, {"tool": "bash", "input": {"command": "echo never"}})
    assert done["status"] == "failed" and done["failReason"] == "error", done
    assert done["error"]["code"] == "SANDBOX_SETUP_FAILED"
    assert "exited 7" in done["error"]["message"]
    assert "E: no package foo" in done["error"]["message"]
    log = await full_log(api, done["id"])
    kinds = types(log)
    assert "sandbox.ready" not in kinds and "tool.call" not in kinds
    assert kinds.count("sandbox.setup") >= 1 and kinds[-1] == "run.failed"
    last = [e for e in log if e["type"] == "sandbox.setup"][-1]
    assert last["data"]["exitCode"] == 7
    assert log[-1]["data"]["error"]["code"] == "SANDBOX_SETUP_FAILED"
    sandboxes = Path(stack.env["RUNYARD_DATA_DIR"]) / "sandboxes"
    await gone(sandboxes / ("sbx_" + done["id"].removeprefix("run_")))  # destroyed beside the end


async def test_setup_output_is_capped(api: httpx.AsyncClient) -> None:
    # 300 KB of output, one line of 99 x's after another.
    slug = await template(
        api, setupScript="yes xxxxxxxxx | tr -d '\\n' | fold -w 99 | head -c 300000"
    )
    done = await run(api, slug, {"text": "ok"})
    assert done["status"] == "completed", done
    setup = [e for e in await full_log(api, done["id"]) if e["type"] == "sandbox.setup"]
    kept = "".join(e["data"]["output"] for e in setup)
    assert 0 < len(kept.encode()) <= SETUP_OUTPUT_BYTES and set(kept) == {"x", "\n"}
    last = setup[-1]["data"]
    assert last["clipped"] is True and last["exitCode"] == 0
    assert last["tail"]["stdout"].endswith("x" * 99 + "\n")  # the end of the output is kept too


async def test_network_full_is_refused_while_the_operator_gate_is_off(
    api: httpx.AsyncClient,
) -> None:
    slug = await template(api, network="full")
    done = await run(api, slug, {"tool": "bash", "input": {"command": "echo never"}})
    assert done["status"] == "failed" and done["error"]["code"] == "SANDBOX_UNAVAILABLE", done
    assert "RUNYARD_SANDBOX_NETWORK" in done["error"]["message"]
    assert f"template {slug!r}" in done["error"]["message"]


@pytest.fixture(scope="module")
def net_stack(
    tmp_path_factory: pytest.TempPathFactory, temporal_server: str, fake_anthropic: FakeAnthropic
) -> Iterator[Stack]:
    """A stack whose operator allows network: RUNYARD_SANDBOX_NETWORK=true."""
    data = tmp_path_factory.mktemp("runyard-net")
    env = stack_env(data, temporal_server, fake_anthropic.base_url, RUNYARD_SANDBOX_NETWORK="true")
    s = launch_stack(data, env)
    yield s
    s.stop()


@pytest.fixture
async def net_api(net_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    from runyard.db.engine import Database
    from tests.conftest import async_db_url

    db = Database(async_db_url(net_stack.env))
    key = await Keys(db).make("org-" + secrets.token_hex(4))
    await db.dispose()
    async with httpx.AsyncClient(
        base_url=net_stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as client:
        yield client


async def test_the_template_decides_network_when_the_operator_allows_it(
    net_api: httpx.AsyncClient,
) -> None:
    probe = {"tool": "bash", "input": {"command": "ip -4 -o addr show | awk '{print $2}'"}}
    full = await run(net_api, await template(net_api, network="full"), probe, {"text": "ok"})
    none = await run(net_api, await template(net_api, network="none"), probe, {"text": "ok"})
    assert full["status"] == none["status"] == "completed"
    full_out = tool_outputs(await full_log(net_api, full["id"]))[0]
    none_out = tool_outputs(await full_log(net_api, none["id"]))[0]
    assert "tap0" in full_out, full_out  # its own slirp4netns interface
    assert "tap0" not in none_out and "lo" in none_out, none_out
