"""Checkpoints, fork and best-of-N on the real stack (issue 26): a run edits files with
``sed`` in bash at turns 1 to 3; its checkpoints and diffs; a fork at turn 2 restores
exactly turn 2's tree and conversation, through a SIGKILL of the worker mid-fork;
best-of-3 makes three independent runs in one group; errors, tenancy and idempotency."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli import app
from runyard.client import AsyncRunyard
from runyard.db.engine import Database
from runyard.db.tables import Run
from runyard.store.transcript import conversation
from tests.conftest import Keys, script, wait_for
from tests.integration.git_support import git
from tests.stack import Stack

SED = [
    "sed -i s/one/two/ a.txt && echo noise > debug.log",
    "sed -i s/two/three/ a.txt && echo new > c.txt",
    "sed -i s/three/four/ a.txt && rm b.txt",
]
SOURCE = script(*({"tool": "bash", "input": {"command": c}} for c in SED), {"text": "done"})
LOOK = script(
    {"tool": "bash", "input": {"command": "cat a.txt; ls; git status --short"}},
    {"text": "looked"},
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "repo"
    path.mkdir()
    git("init", "-q", "-b", "main", str(path))
    (path / "a.txt").write_text("one\n")
    (path / "b.txt").write_text("bee\n")
    (path / ".gitignore").write_text("*.log\n")
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "base", cwd=path)
    return path


async def _run(api: httpx.AsyncClient, repo: Path, prompt: str) -> dict[str, Any]:
    body = {"prompt": prompt, "model": "scripted", "repo": str(repo), "start": True}
    resp = await api.post("/v1/runs", json=body)
    assert resp.status_code == 201, resp.text
    return await wait_for(api, resp.json()["id"], {"completed", "failed"}, timeout=60)


async def _checkpoints(api: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    resp = await api.get(f"/v1/runs/{run_id}/checkpoints")
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


async def _tool_outputs(api: httpx.AsyncClient, run_id: str) -> list[tuple[str, str]]:
    evs = (
        await api.get(f"/v1/runs/{run_id}/events", headers={"Accept": "application/json"})
    ).json()
    evs = evs["data"] if isinstance(evs, dict) else evs
    calls = {e["data"]["toolCallId"]: e["data"] for e in evs if e["type"] == "tool.call"}
    return [
        (calls[e["data"]["toolCallId"]]["input"]["command"], e["data"]["output"])
        for e in evs
        if e["type"] == "tool.result"
    ]


async def test_a_fork_restores_the_turns_tree_and_conversation(
    api: httpx.AsyncClient, repo: Path, stack_db: Database, stack: Stack, keys: Keys
) -> None:
    source = await _run(api, repo, SOURCE)
    assert source["status"] == "completed", source
    ckpts = await _checkpoints(api, source["id"])
    # Turns 1 to 3 changed the worktree; turn 4 (the answer) did not. debug.log is ignored.
    assert [(c["turn"], c["seq"]) for c in ckpts] == [(1, 1), (2, 2), (3, 3)]
    assert all(c["id"].startswith("ckp_") and len(c["treeSha"]) == 40 for c in ckpts)
    assert (ckpts[1]["files"], ckpts[1]["insertions"], ckpts[1]["deletions"]) == (2, 2, 1)
    diff = await api.get(f"/v1/runs/{source['id']}/checkpoints/2/diff")
    assert diff.status_code == 200 and diff.headers["content-type"].startswith("text/x-diff")
    assert "-two\n+three" in diff.text and "+new" in diff.text and "debug.log" not in diff.text
    base = await api.get(f"/v1/runs/{source['id']}/checkpoints/2/diff", params={"vs": "base"})
    assert "-one\n+three" in base.text
    resp = await api.get(f"/v1/runs/{source['id']}/checkpoints/4/diff")
    assert resp.status_code == 404  # an unchanged boundary has no checkpoint

    # The conversation and the code of turn 2: the scripted model goes on with line 3.
    fork = await api.post(f"/v1/runs/{source['id']}/fork", json={"turn": 2})
    assert fork.status_code == 201, fork.text
    (child,) = fork.json()["data"]
    assert child["forkedFrom"] == {"runId": source["id"], "turn": 2}
    assert child["groupId"].startswith("grp_") and child["prompt"] == source["prompt"]
    # Only the code of turn 2, and a prompt that looks at it.
    look = await api.post(
        f"/v1/runs/{source['id']}/fork", json={"turn": 2, "restore": "code", "prompt": LOOK}
    )
    assert look.status_code == 201, look.text
    # A SIGKILL of the worker while the forks are provisioned (their checkpoint restored):
    # they lose nothing and run nothing twice.
    stack.kill_worker(stack.workers[0])
    stack.start_worker()
    child = await wait_for(api, child["id"], {"completed", "failed"}, timeout=60)
    looked = await wait_for(api, look.json()["data"][0]["id"], {"completed", "failed"})
    assert child["status"] == "completed" and looked["status"] == "completed", (child, looked)

    (_, output), *_ = await _tool_outputs(api, looked["id"])
    assert "three" in output.splitlines() and "four" not in output  # a.txt as turn 2 left it
    assert "c.txt" in output and "b.txt" in output and "debug.log" not in output
    assert " M a.txt" in output and "?? c.txt" in output  # uncommitted, as in the source

    # The fork's first turn is the source's third, run on turn 2's tree: the same tree.
    assert [c for c, _ in await _tool_outputs(api, child["id"])] == [SED[2]]
    mine = await _checkpoints(api, child["id"])
    assert [c["turn"] for c in mine] == [1] and mine[0]["treeSha"] == ckpts[2]["treeSha"]
    own = await api.get(f"/v1/runs/{child['id']}/checkpoints/1/diff")
    assert "-three\n+four" in own.text and "c.txt" not in own.text  # from the restored tree

    def talks(s: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        src, fk = s.get(Run, source["id"]), s.get(Run, child["id"])
        return conversation(s, src, until_turn=2), conversation(s, fk, until_turn=0)

    at_two, seeded = await stack_db.read(talks)
    assert seeded == at_two and at_two[-1]["role"] == "user"  # ends with turn 2's results

    # Another organization sees none of it.
    other = await keys.make("org-other-ckpt")
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {other}"}
    ) as c:
        for method, url, body in [
            ("GET", f"/v1/runs/{source['id']}/checkpoints", None),
            ("GET", f"/v1/runs/{source['id']}/checkpoints/2/diff", None),
            ("POST", f"/v1/runs/{source['id']}/fork", {"turn": 2}),
        ]:
            resp = await c.request(method, url, json=body)
            assert resp.status_code == 404, (url, resp.text)
        assert (await c.get("/v1/runs", params={"groupId": child["groupId"]})).json()["data"] == []


async def test_best_of_three_and_the_errors(api: httpx.AsyncClient, repo: Path) -> None:
    source = await _run(api, repo, SOURCE)
    for bad, field in [
        ({"turn": 9}, "turn"),
        ({"turn": 0}, "turn"),
        ({"turn": 1, "attempts": 5}, "attempts"),
    ]:
        resp = await api.post(f"/v1/runs/{source['id']}/fork", json=bad)
        assert resp.status_code == 400, resp.text
        assert resp.json()["type"] == "VALIDATION_FAILED"
        assert [e["field"] for e in resp.json()["errors"]] == [field]
    resp = await api.post(f"/v1/runs/{source['id']}/fork", json={"turn": 4})
    assert resp.status_code == 400 and resp.json()["errors"][0]["field"] == "prompt"

    key = {"Idempotency-Key": "best-of-3"}
    body: dict[str, Any] = {"turn": 1, "attempts": 3, "metadata": {"try": "n"}}
    first = await api.post(f"/v1/runs/{source['id']}/fork", json=body, headers=key)
    assert first.status_code == 201, first.text
    again = await api.post(f"/v1/runs/{source['id']}/fork", json=body, headers=key)
    assert again.headers.get("Idempotent-Replayed") == "true"
    runs = first.json()["data"]
    assert [r["id"] for r in again.json()["data"]] == [r["id"] for r in runs]
    assert len({r["id"] for r in runs}) == 3 and len({r["groupId"] for r in runs}) == 1
    assert all(r["forkedFrom"] == {"runId": source["id"], "turn": 1} for r in runs)
    listed = (await api.get("/v1/runs", params={"groupId": runs[0]["groupId"]})).json()
    assert sorted(r["id"] for r in listed["data"]) == sorted(r["id"] for r in runs)
    done = await asyncio.gather(*(wait_for(api, r["id"], {"completed", "failed"}) for r in runs))
    assert [r["status"] for r in done] == ["completed"] * 3
    sandboxes = {r["sandbox"]["id"] for r in done}
    assert len(sandboxes) == 3  # three independent runs
    trees = {(await _checkpoints(api, r["id"]))[0]["treeSha"] for r in runs}
    assert trees == {(await _checkpoints(api, source["id"]))[1]["treeSha"]}

    # Best-of-N from scratch: the answer is the first run; the group lists all of them.
    resp = await api.post(
        "/v1/runs", json={"prompt": LOOK, "model": "scripted", "repo": str(repo), "attempts": 2}
    )
    assert resp.status_code == 201, resp.text
    group = resp.json()["groupId"]
    assert resp.json()["status"] == "queued" and group.startswith("grp_")
    listed = (await api.get("/v1/runs", params={"groupId": group})).json()["data"]
    assert len(listed) == 2 and resp.json()["id"] in {r["id"] for r in listed}

    # The client and the command line.
    api_key = api.headers["Authorization"].removeprefix("Bearer ")
    async with AsyncRunyard(str(api.base_url), api_key) as ry:
        made = await ry.create(LOOK, model="scripted", attempts=3)
        assert made.group_id and len(await ry.group(made.group_id)) == 3
        page = await ry.checkpoints(source["id"])
        assert [c.turn for c in page.data] == [1, 2, 3] and page.data[0].tree_sha
        assert "+four" in await ry.checkpoint_diff(source["id"], 3)
        (forked,) = await ry.fork(source["id"], 3, restore="conversation", start=False)
        assert forked.forked_from is not None and forked.forked_from.turn == 3
    env = {"RUNYARD_API_URL": str(api.base_url), "RUNYARD_API_KEY": api_key}
    out = CliRunner().invoke(app, ["checkpoints", source["id"]], env=env)
    assert out.exit_code == 0 and len(out.stdout.splitlines()) == 4, out.output
    out = CliRunner().invoke(app, ["fork", source["id"], "--turn", "9"], env=env)
    assert out.exit_code == 1 and "turn 9 is not a turn boundary" in out.output
