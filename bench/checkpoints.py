"""Checkpoints and forks (issue 26): the cost of one checkpoint per turn for a repository
of 1,000 files, and the time from a fork request to the fork's first events.

.venv/bin/python -m bench.checkpoints [--files 1000] [--turns 40] [--forks 10]

1. Checkpoint cost (goal: ≤ 50 ms p50). A local sandbox (bubblewrap when it is installed)
   clones a generated repository of ``--files`` files (about 2 KiB each, in 20
   directories). Each turn ``sed`` edits three files in bash, then the timed part runs:
   what ``checkpoint_workspace`` does — the snapshot in the sandbox (scratch index,
   ``add -A``, ``write-tree``, ``commit-tree``, the two diffs and the bundle, read back with
   a byte cap) and the three files written to the artifact store. Also timed: a boundary
   whose worktree did not change (only ``write-tree`` and a compare).
2. Fork to first event (goal: ≤ 1 s on the local provider). On a real stack (Temporal dev
   server, worker, API), a scripted run on that repository edits files at turns 1 to 3;
   then ``--forks`` times: ``POST /v1/runs/{id}/fork`` at turn 2 with ``start: true``, and
   the time until the fork's ``run.started``, ``sandbox.ready`` (clone and restore done)
   and its first ``tool.call`` (its first model turn) are in its event log (polled every
   10 ms, so each figure may be up to 10 ms late). Alternating with the forks, the same
   figures for a new run of the same repository (create with start): the baseline, whose
   difference to the fork is what the restore (and the seeded conversation) costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench._harness import report, running_stack, summary
from runyard.artifacts.store import LocalArtifactStore
from runyard.checkpoints.git import take_snapshot
from runyard.sandbox.base import SandboxSpec
from runyard.sandbox.local import LocalSandboxProvider


def make_repo(root: Path, files: int) -> Path:
    repo = root / "repo"
    for i in range(files):
        path = repo / f"pkg{i % 20}" / f"mod{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "".join(f"def f{i}_{n}(x):\n    return x + {n}\n\n" for n in range(60))
        path.write_text(body)
    (repo / ".gitignore").write_text("*.log\n__pycache__/\n")
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@b"]
    subprocess.run([*git, "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "base"], check=True)
    return repo


async def checkpoint_cost(root: Path, repo: Path, turns: int) -> dict[str, Any]:
    provider = LocalSandboxProvider(root / "sbx", bwrap=shutil.which("bwrap"))
    store = LocalArtifactStore(root / "artifacts", b"k" * 32)
    sid = "sbx_ckptbench"
    sandbox = await provider.create(sid, SandboxSpec(size="m", repo_url=str(repo)))
    base = (await sandbox.exec("git rev-parse HEAD", timeout=30)).stdout.strip()
    changed: list[float] = []
    unchanged: list[float] = []
    sizes: list[int] = []
    for turn in range(1, turns + 1):
        mods = [(turn * 7 + k * 331) % 1000 for k in range(3)]
        edit = " ".join(f"pkg{m % 20}/mod{m}.py" for m in mods)
        done = await sandbox.exec(f"sed -i '1i # turn {turn}' {edit}", timeout=30)
        assert done.exit_code == 0, done.stderr
        t0 = time.perf_counter()
        snap = await take_snapshot(sandbox, turn, base, max_bundle=64 << 20, max_diff=2 << 20)
        assert snap.changed and snap.bundle is not None
        await asyncio.gather(  # as record_boundary writes them
            *(
                store.put(f"o/r/checkpoints/{turn}/{name}", data, "application/octet-stream")
                for name, data in (
                    ("p", snap.previous_diff),
                    ("b", snap.base_diff),
                    ("c", snap.bundle),
                )
            )
        )
        changed.append((time.perf_counter() - t0) * 1000)
        sizes.append(snap.bundle_size)
        t0 = time.perf_counter()
        same = await take_snapshot(
            sandbox, turn + 1000, base, max_bundle=64 << 20, max_diff=2 << 20
        )
        unchanged.append((time.perf_counter() - t0) * 1000)
        assert not same.changed
    floor = []
    for _ in range(turns):  # the floor: one round trip to the sandbox, one process
        t0 = time.perf_counter()
        await sandbox.exec("true", timeout=30)
        floor.append((time.perf_counter() - t0) * 1000)
    await provider.destroy(sid)
    return {
        "sandbox exec of 'true', for scale (ms)": summary(floor),
        "bubblewrap": bool(shutil.which("bwrap")),
        "checkpoint of a changed worktree, 3 files edited (ms)": summary(changed),
        "boundary with no change (ms)": summary(unchanged),
        "bundle bytes, last turn": sizes[-1],
    }


SED = [
    "sed -i 's/return x + 1$/return x + 101/' pkg1/mod1.py",
    "sed -i 's/return x + 2$/return x + 102/' pkg2/mod2.py && echo new > notes.txt",
    "sed -i 's/return x + 3$/return x + 103/' pkg3/mod3.py",
]


def source_script() -> str:
    lines: list[dict[str, Any]] = [{"tool": "bash", "input": {"command": c}} for c in SED]
    lines.append({"text": "done"})
    return "#!scripted\n" + "\n".join(json.dumps(x) for x in lines)


async def first_events(c: httpx.AsyncClient, run_id: str, t0: float) -> dict[str, float]:
    wanted = ("run.started", "sandbox.ready", "tool.call")
    seen: dict[str, float] = {}
    while len(seen) < len(wanted):
        got = (
            await c.get(f"/v1/runs/{run_id}/events", headers={"Accept": "application/json"})
        ).json()
        evs = got["data"] if isinstance(got, dict) else got
        now = (time.perf_counter() - t0) * 1000
        for ev in evs:
            if ev["type"] in wanted and ev["type"] not in seen:
                seen[ev["type"]] = now
            if ev["type"] in ("run.failed", "run.cancelled"):
                raise RuntimeError(f"{run_id} ended: {ev}")
        await asyncio.sleep(0.01)
    return seen


async def fork_latency(repo: Path, forks: int) -> dict[str, Any]:
    async with running_stack(RUNYARD_ALLOW_LOCAL_REPOS="true") as (stack, key, _):
        async with httpx.AsyncClient(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as c:
            body = {
                "prompt": source_script(),
                "model": "scripted",
                "repo": str(repo),
                "start": True,
            }
            source = (await c.post("/v1/runs", json=body)).json()
            while (await c.get(f"/v1/runs/{source['id']}/status")).json()["status"] != "completed":
                await asyncio.sleep(0.05)
            names = ("request", "run.started", "sandbox.ready", "tool.call")
            rows: dict[str, list[float]] = {name: [] for name in names}
            plain: dict[str, list[float]] = {name: [] for name in names}
            for i in range(2 * forks + 2):  # alternating; the first two are warm-ups
                t0 = time.perf_counter()
                if i % 2:  # the baseline: a new run of the same repository, not a fork
                    resp = await c.post("/v1/runs", json=body)
                    made = resp.json()
                else:
                    resp = await c.post(f"/v1/runs/{source['id']}/fork", json={"turn": 2})
                    made = resp.json()["data"][0]
                request_ms = (time.perf_counter() - t0) * 1000
                assert resp.status_code == 201, resp.text
                seen = await first_events(c, made["id"], t0)
                if i >= 2:
                    into = plain if i % 2 else rows
                    into["request"].append(request_ms)
                    for name, ms in seen.items():
                        into[name].append(ms)
                while (await c.get(f"/v1/runs/{made['id']}/status")).json()["status"] not in (
                    "completed",
                    "failed",
                ):
                    await asyncio.sleep(0.05)
    return {
        **{f"fork → {name} (ms)": summary(values) for name, values in rows.items()},
        **{f"new run (baseline) → {name} (ms)": summary(v) for name, v in plain.items()},
    }


async def main(files: int, turns: int, forks: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="runyard-ckpt-bench-"))
    try:
        repo = make_repo(root, files)
        rows: dict[str, Any] = {
            "files": files,
            "load average": Path("/proc/loadavg").read_text().split()[:3],
        }
        rows |= await checkpoint_cost(root, repo, turns)
        rows |= await fork_latency(repo, forks)
        report("checkpoints", rows)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--forks", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.files, args.turns, args.forks))
