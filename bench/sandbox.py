"""Local sandbox provision: workspace + clone of a 1,000-file repo + first bwrap command.

.venv/bin/python -m bench.sandbox [--runs 30] [--files 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench._harness import report, summary
from runyard.sandbox.base import SandboxSpec
from runyard.sandbox.local import LocalSandboxProvider


def make_repo(root: Path, files: int) -> Path:
    repo = root / "repo"
    for i in range(files):
        d = repo / f"pkg{i % 20}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{i}.py").write_text(f"VALUE = {i}\n" * 20)
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@b", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "bench"], check=True)
    return repo


async def main(runs: int, files: int, sandbox_dir: str | None) -> None:
    root = Path(tempfile.mkdtemp(prefix="runyard-sbx-bench-"))
    repo = make_repo(root, files)
    bwrap = shutil.which("bwrap")
    where = Path(sandbox_dir) / "runyard-sbx-bench" if sandbox_dir else root / "sandboxes"
    provider = LocalSandboxProvider(where, bwrap=bwrap)
    provision, first_cmd = [], []
    for i in range(runs + 2):
        sid = f"sbx_bench{i}"
        t0 = time.perf_counter()
        sandbox = await provider.create(sid, SandboxSpec(repo_url=str(repo)))
        t1 = time.perf_counter()
        res = await sandbox.exec("ls | wc -l", timeout=30)
        t2 = time.perf_counter()
        assert res.exit_code == 0 and res.stdout.strip() == "20", res
        if i >= 2:  # two warm-up provisions
            provision.append((t1 - t0) * 1000)
            first_cmd.append((t2 - t1) * 1000)
        await provider.destroy(sid)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(where, ignore_errors=True)
    total = [a + b for a, b in zip(provision, first_cmd, strict=True)]
    report(
        "sandbox" if not sandbox_dir else "sandbox-" + Path(sandbox_dir).name,
        {
            "sandbox dir": str(where.parent),
            "bwrap": bwrap or "not installed",
            "cgroups": provider.use_cgroups,
            f"workspace + clone of {files} files (ms)": summary(provision),
            "first command under bwrap (ms)": summary(first_cmd),
            "provision total (ms)": summary(total),
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--sandbox-dir", help="where workspaces go, e.g. /dev/shm (a tmpfs)")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.files, args.sandbox_dir))
