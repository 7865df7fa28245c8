"""Repositories cloned into the sandbox, and the Anthropic path through the real SDK."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard.jsonsafe import loads_strict
from tests.conftest import TERMINAL, script, wait_for
from tests.fakes.anthropic_server import FakeAnthropic, Reply


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "project"
    (repo / "src").mkdir(parents=True)
    (repo / "README.md").write_text("# Widget factory\n\nMakes widgets.\n")
    (repo / "src" / "app.py").write_text("print('widgets')\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    return repo


async def test_default_scripted_summary_of_a_repo(api: httpx.AsyncClient, git_repo: Path) -> None:
    run = (
        await api.post(
            "/v1/runs",
            json={"prompt": "summarise", "model": "scripted", "repo": str(git_repo), "start": True},
        )
    ).json()
    done = await wait_for(api, run["id"], TERMINAL)
    assert done["status"] == "completed", done
    text = done["outputs"][0]["text"]
    assert "2 files" in text and "Widget factory" in text


async def test_file_url_repo_and_tools_in_workspace(api: httpx.AsyncClient, git_repo: Path) -> None:
    prompt = script(
        {"tool": "bash", "input": {"command": "python3 src/app.py 2>&1 || cat src/app.py"}},
        {
            "tool": "edit_file",
            "input": {"path": "src/app.py", "old_string": "widgets", "new_string": "gadgets"},
        },
        {"tool": "read_file", "input": {"path": "/workspace/src/app.py"}},
        {"tool": "read_file", "input": {"path": "../../../../etc/hostname"}},
        {"text": "edited"},
    )
    run = (
        await api.post(
            "/v1/runs",
            json={
                "prompt": prompt,
                "model": "scripted",
                "repo": f"file://{git_repo}",
                "start": True,
            },
        )
    ).json()
    done = await wait_for(api, run["id"], TERMINAL)
    assert done["status"] == "completed", done
    # The clone was a copy: the original repository is untouched.
    assert "widgets" in (git_repo / "src" / "app.py").read_text()


async def test_anthropic_tool_use_round_trip(
    api: httpx.AsyncClient, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reset()
    fake_anthropic.queue(
        Reply(
            blocks=[
                {"text": "Let me check."},
                {
                    "tool_use": {
                        "id": "toolu_01",
                        "name": "bash",
                        "input": {"command": "echo from-claude"},
                    }
                },
            ],
            usage={"input": 100, "output": 20, "cache_write": 50},
        ),
        Reply(
            blocks=[{"text": "Finished: from-claude seen."}],
            usage={"input": 120, "output": 10, "cache_read": 50},
        ),
    )
    run = (
        await api.post(
            "/v1/runs",
            json={"prompt": "say hi", "model": "sonnet", "guidance": "Be brief.", "start": True},
        )
    ).json()
    done = await wait_for(api, run["id"], TERMINAL)
    assert done["status"] == "completed", done
    assert done["outputs"] == [{"type": "text", "text": "Finished: from-claude seen."}]
    u = done["usage"]
    assert (u["turns"], u["inputTokens"], u["outputTokens"]) == (2, 220, 30)
    assert (u["cacheReadTokens"], u["cacheWriteTokens"]) == (50, 50)
    assert u["cacheHitRate"] == round(50 / 320, 4)
    expected = (220 * 3 + 30 * 15 + 50 * 3.75 + 50 * 0.3) / 1e6
    assert u["costUsd"] == round(expected, 6)  # cost is kept in micro-dollars

    first, second = fake_anthropic.requests
    assert first["model"] == "claude-sonnet-4-5" and first["stream"] is True
    assert first["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert "Be brief." in first["system"][0]["text"]
    assert first["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert {t["name"] for t in first["tools"]} >= {
        "bash",
        "read_file",
        "write_file",
        "edit_file",
        "list_files",
    }
    assert first["messages"] == [{"role": "user", "content": "say hi"}]
    assistant, results = second["messages"][1], second["messages"][2]
    assert assistant["role"] == "assistant"
    assert assistant["content"][1] == {
        "type": "tool_use",
        "id": "toolu_01",
        "name": "bash",
        "input": {"command": "echo from-claude"},
    }
    assert results["role"] == "user" and results["content"][0]["tool_use_id"] == "toolu_01"
    assert "from-claude" in results["content"][0]["content"]
    assert results["content"][0]["is_error"] is False


async def test_anthropic_client_error_fails_the_run(
    api: httpx.AsyncClient, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reset()
    fake_anthropic.queue(Reply(status=400))
    run = (await api.post("/v1/runs", json={"prompt": "x", "model": "haiku", "start": True})).json()
    done = await wait_for(api, run["id"], TERMINAL)
    assert (done["status"], done["failReason"], done["error"]["code"]) == (
        "failed",
        "error",
        "MODEL_ERROR",
    )
    assert len(fake_anthropic.requests) == 1  # a 400 is never retried


async def test_a_local_repository_is_read_only_to_runs(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    """Local repositories are allowed on this stack, with no RUNYARD_LOCAL_REPO_ROOTS: a
    run reads one, but nothing it pushes reaches it; its work is kept as changes.patch."""

    def branches() -> str:
        return subprocess.run(
            ["git", "-C", str(git_repo), "for-each-ref", "--format=%(refname) %(objectname)"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    before = branches()
    push = (
        "git checkout -q -b feat && echo more >> README.md && git commit -qam more && "
        "git push -q origin feat HEAD:runyard/feat"
    )
    run = (
        await api.post(
            "/v1/runs",
            json={
                "prompt": script({"tool": "bash", "input": {"command": push}}, {"text": "done"}),
                "model": "scripted",
                "repo": str(git_repo),
                "start": True,
            },
        )
    ).json()
    done = await wait_for(api, run["id"], TERMINAL)
    assert done["status"] == "completed", done
    assert branches() == before
    assert [o["type"] for o in done["outputs"]] == ["text", "patch"]
    events = (
        await api.get(f"/v1/runs/{run['id']}/events", headers={"Accept": "application/json"})
    ).json()
    results = [e["data"]["output"] for e in events if e["type"] == "tool.result"]
    assert "refused forwarding feat: this run's repository is a local path" in results[0]
    assert "refused forwarding runyard/feat" in results[0]


async def _strict_events(api: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    """The run's events read both ways, each checked to be standard JSON (no NaN)."""
    resp = await api.get(f"/v1/runs/{run_id}/events", headers={"Accept": "application/json"})
    assert resp.status_code == 200, resp.text
    events: list[dict[str, Any]] = loads_strict(resp.text)
    logs = await api.get(f"/v1/runs/{run_id}/logs")
    assert logs.status_code == 200
    assert [loads_strict(line) for line in logs.text.splitlines()] == events
    return events


async def test_a_non_finite_tool_input_is_a_tool_error(
    api: httpx.AsyncClient, fake_anthropic: FakeAnthropic
) -> None:
    """Issue 23, item 14: a NaN in a model's tool input (through the real SDK, and from
    the scripted model) becomes a tool error the agent sees; nothing ran, nothing stored
    is non-finite, and the events read back as JSON."""
    nan = float("nan")
    fake_anthropic.reset()
    fake_anthropic.queue(
        Reply(
            blocks=[
                {
                    "tool_use": {
                        "id": "toolu_nan",
                        "name": "bash",
                        "input": {"command": "touch ran", "timeout": nan},
                    }
                }
            ]
        ),
        Reply(blocks=[{"text": "saw the error"}]),
    )
    claude = script({"tool": "bash", "input": {"command": "touch ran", "x": [float("inf")]}})
    runs = [
        (await api.post("/v1/runs", json=body)).json()["id"]
        for body in [
            {"prompt": "go", "model": "sonnet", "start": True},
            {"prompt": claude + '\n{"text": "done"}', "model": "scripted", "start": True},
        ]
    ]
    for run_id in runs:
        done = await wait_for(api, run_id, TERMINAL)
        assert done["status"] == "completed", done
        events = await _strict_events(api, run_id)
        calls = [e["data"] for e in events if e["type"] == "tool.call"]
        results = [e["data"] for e in events if e["type"] == "tool.result"]
        assert len(calls) == 1 and len(results) == 1, events
        assert None in [*calls[0]["input"].values(), *calls[0]["input"].get("x", [])]
        assert results[0]["isError"] is True and "non-finite" in results[0]["output"]
    # The model saw the error as the call's result.
    tool_result = fake_anthropic.requests[1]["messages"][2]["content"][0]
    assert tool_result["is_error"] is True and "non-finite" in tool_result["content"]


@pytest.mark.parametrize("model", ["sonnet", "scripted"])
async def test_absurd_usage_is_a_model_error(
    api: httpx.AsyncClient, fake_anthropic: FakeAnthropic, model: str
) -> None:
    """Issue 23, item 15: a turn reporting 10^25 tokens fails the run with MODEL_ERROR
    (a contract code), not OverflowError, and nothing of that turn is charged."""
    fake_anthropic.reset()
    if model == "sonnet":  # queued only where it is consumed: the fake outlives this test
        fake_anthropic.queue(Reply(blocks=[{"text": "hi"}], usage={"input": 10**25}))
    prompt = script({"text": "hi", "usage": {"inputTokens": 10**25}})
    body = {"prompt": prompt if model == "scripted" else "hi", "model": model, "start": True}
    run = (await api.post("/v1/runs", json=body)).json()
    done = await wait_for(api, run["id"], TERMINAL)
    assert (done["status"], done["failReason"], done["error"]["code"]) == (
        "failed",
        "error",
        "MODEL_ERROR",
    ), done
    assert "impossible usage" in done["error"]["message"]
    assert done["usage"]["inputTokens"] == 0
    if model == "sonnet":
        assert len(fake_anthropic.requests) == 1  # never retried
