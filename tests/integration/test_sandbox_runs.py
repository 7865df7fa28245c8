"""The sandbox reproductions of issue "Sandboxes v2" against the real worker: FIFO reads,
huge files, a full disk, and NUL characters in every string the API takes (SQLite and
Postgres)."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard.db.engine import Database
from runyard.sandbox.disk import loop_mounts_possible
from tests.conftest import (
    TERMINAL,
    Keys,
    async_db_url,
    launch_stack,
    script,
    stack_env,
    wait_for,
)
from tests.fakes.anthropic_server import FakeAnthropic
from tests.integration.test_events import full_log
from tests.stack import Stack


async def _start(api: httpx.AsyncClient, *lines: dict[str, Any]) -> str:
    resp = await api.post(
        "/v1/runs", json={"prompt": script(*lines), "model": "scripted", "start": True}
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _results(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["data"] for e in log if e["type"] == "tool.result"]


async def test_six_fifo_runs_leave_other_runs_unaffected(api: httpx.AsyncClient) -> None:
    fifo: list[dict[str, Any]] = [
        {"tool": "bash", "input": {"command": "mkfifo f && truncate -s 1G big"}},
        {"tool": "read_file", "input": {"path": "f"}},
        {"tool": "edit_file", "input": {"path": "f", "old_string": "a", "new_string": "b"}},
        {"tool": "read_file", "input": {"path": "big"}},
        {"text": "fifo done"},
    ]
    fifo_ids = [await _start(api, *fifo) for _ in range(6)]
    other = await _start(
        api,
        {"tool": "write_file", "input": {"path": "a.txt", "content": "hello"}},
        {"tool": "read_file", "input": {"path": "a.txt"}},
        {"text": "other done"},
    )
    done = await wait_for(api, other, TERMINAL, timeout=90)
    assert done["status"] == "completed", done
    assert _results(await full_log(api, other))[1]["output"] == "hello"
    for run_id in fifo_ids:
        done = await wait_for(api, run_id, TERMINAL, timeout=90)
        assert done["status"] == "completed", done
        results = _results(await full_log(api, run_id))
        assert results[1]["isError"] and "FIFO" in results[1]["output"]
        assert results[2]["isError"] and "FIFO" in results[2]["output"]
        assert "the file is 1073741824 bytes" in results[3]["output"]


@pytest.mark.skipif(loop_mounts_possible() is not None, reason="no loop mounts here")
async def test_filling_the_disk_ends_the_run_resource_limit_exceeded(
    api: httpx.AsyncClient,
) -> None:
    # The default template is size m: 10240 MiB of disk.
    run_id = await _start(
        api,
        {"tool": "bash", "input": {"command": "fallocate -l 6G a; fallocate -l 6G b"}},
        {"text": "never"},
    )
    done = await wait_for(api, run_id, TERMINAL, timeout=60)
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "RUN_RESOURCE_LIMIT_EXCEEDED", done


def _nul_bodies() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("/v1/runs", {"prompt": "a\u0000b", "model": "scripted"}),
        ("/v1/runs", {"prompt": "x", "model": "scripted", "env": {"K": "a\u0000b"}}),
        ("/v1/runs", {"prompt": "x", "model": "scripted", "guidance": "\u0000"}),
        ("/v1/runs", {"prompt": "x", "model": "scripted", "metadata": {"k\u0000": 1}}),
        ("/v1/agents", {"name": "a\u0000", "instructions": "do"}),
        ("/v1/agents", {"name": "a", "instructions": "do\u0000"}),
    ]


async def _assert_nul_refused(c: httpx.AsyncClient) -> None:
    for path, body in _nul_bodies():
        resp = await c.post(path, json=body)
        assert resp.status_code == 400, (path, body, resp.text)
        assert resp.json()["type"] == "VALIDATION_FAILED", resp.text
    for url in ("/v1/runs/run_%00", "/v1/runs?status=%00"):
        resp = await c.get(url)
        assert resp.status_code == 400 and resp.json()["type"] == "VALIDATION_FAILED", url
    ok = await c.post("/v1/runs", json={"prompt": "x", "model": "scripted"})
    assert ok.status_code == 201, ok.text
    rpc = await c.post(
        f"/v1/runs/{ok.json()['id']}/command",
        json={"jsonrpc": "2.0", "method": "user_message", "params": {"content": "\u0000"}, "id": 1},
    )
    assert rpc.json()["error"]["code"] == -32602, rpc.text


async def test_nul_characters_are_refused_on_sqlite(api: httpx.AsyncClient) -> None:
    await _assert_nul_refused(api)


async def test_nul_characters_are_refused_on_postgres(pg_stack: Stack, postgres_url: str) -> None:
    db = Database(postgres_url)
    key = await Keys(db).make("pg-nul-" + secrets.token_hex(3))
    await db.dispose()
    async with httpx.AsyncClient(
        base_url=pg_stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    ) as c:
        await _assert_nul_refused(c)
        # A NUL from the model (here a client's script) reaches no text column either: an
        # ask_user question with one is asked (as U+FFFD), the run is not poisoned.
        run_id = await _start(c, {"ask": "a\u0000b?"}, {"text": "done"})
        waiting = await wait_for(c, run_id, {"waiting_for_input", *TERMINAL}, timeout=60)
        assert waiting["status"] == "waiting_for_input", waiting
        assert waiting["pendingQuestion"] == "a\ufffdb?", waiting
        await c.post(f"/v1/runs/{run_id}/cancel")


async def test_without_bubblewrap_a_run_fails_sandbox_unavailable(
    tmp_path: Path, temporal_server: str, fake_anthropic: FakeAnthropic
) -> None:
    # The worker's PATH has what it needs but bwrap; RUNYARD_SANDBOX_BWRAP stays "auto".
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("git", "python3", "mkfs.ext4", "mount", "umount", "slirp4netns"):
        if found := shutil.which(tool):
            (bin_dir / tool).symlink_to(found)
    data = tmp_path / "data"
    env = stack_env(data, temporal_server, fake_anthropic.base_url, PATH=str(bin_dir))
    stack = launch_stack(data, env)
    try:
        db = Database(async_db_url(env))
        key = await Keys(db).make("nobwrap")
        await db.dispose()
        async with httpx.AsyncClient(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as c:
            run_id = await _start(c, {"tool": "bash", "input": {"command": "id"}}, {"text": "x"})
            done = await wait_for(c, run_id, TERMINAL, timeout=60)
        assert done["status"] == "failed", done
        assert done["error"]["code"] == "SANDBOX_UNAVAILABLE", done
        assert "bubblewrap" in done["error"]["message"], done
        logs = "".join(p.read_text() for p in (data / "logs").glob("worker-*.log"))
        assert "sandbox.bwrap_missing" in logs
    finally:
        stack.stop()
