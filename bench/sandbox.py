"""Local sandbox provision: workspace (its disk image, mounted) + the sandbox's runner
started under bubblewrap, without a repository and with a clone of a 1,000-file repo,
then the first command. Provision returns while the runner starts (a run's first model
turn hides it); "provision + first command" is the time to a first result without that.
Then the CPU of a provision + destroy, no repository, without and with a first command
(what every run pays), two ways: this process's and its reaped children's (bwrap, mount
and cgroup tools) user + system time from getrusage, per provision; and the whole
machine's busy CPU over all of them, less the machine's background, per provision. Only
the second counts the kernel's work on the disk image and the namespaces (and a runner
killed before it was reaped, as every runner was before it exited by itself on
destroy); it is the cost. Run it on a quiet machine: any other work in those seconds is
counted too.

.venv/bin/python -m bench.sandbox [--runs 30] [--files 1000] [--sandbox-dir DIR]

Without --sandbox-dir the sandboxes go under the data dir's default place
(.runyard/sandboxes of this checkout): the data dir's own disk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench._harness import background_ms_per_s, machine_probe, report, summary
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


def cpu_with_children_ms() -> float:
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return (own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime) * 1000


async def provision_cpu(
    provider: LocalSandboxProvider, runs: int, *, ready: bool, background: float
) -> tuple[list[float], float]:
    """CPU per provision + destroy (no repo); with ``ready``, after a first command (the
    runner started and answering, as in every run). Two warm-ups not counted. Returns
    each one's CPU from getrusage (this process and its reaped children) and the mean
    busy CPU of the whole machine per one, less the background, which also counts the
    kernel's work on the loop device, mounts and namespaces that getrusage misses."""
    machine = machine_probe(background)
    out, before = [], 0.0
    for i in range(runs + 2):
        if i == 2:
            before = machine()
        sid = f"sbx_benchcpu{int(ready)}{i}"
        c0 = cpu_with_children_ms()
        sandbox = await provider.create(sid, SandboxSpec())
        if ready:
            assert (await sandbox.exec("true", timeout=30)).exit_code == 0
        await provider.destroy(sid)
        if i >= 2:
            out.append(cpu_with_children_ms() - c0)
    await asyncio.sleep(0.5)  # the kernel's deferred cleanup (namespaces, loop devices)
    return out, (machine() - before) / runs


async def main(runs: int, files: int, sandbox_dir: str | None) -> None:
    root = Path(tempfile.mkdtemp(prefix="runyard-sbx-bench-"))
    repo = make_repo(root, files)
    bwrap = shutil.which("bwrap")
    base = Path(sandbox_dir) if sandbox_dir else Path(".runyard").resolve()
    where = base / "runyard-sbx-bench"
    provider = LocalSandboxProvider(where, bwrap=bwrap)
    # Before any sandbox: the kernel's deferred cleanup of destroyed ones would count.
    background = await background_ms_per_s()
    rows: dict[str, list[float]] = {"bare": [], "bare+first": [], "clone": [], "first": []}
    for i in range(runs + 2):
        for kind, spec in (("bare", SandboxSpec()), ("clone", SandboxSpec(repo_url=str(repo)))):
            sid = f"sbx_bench{kind}{i}"
            t0 = time.perf_counter()
            sandbox = await provider.create(sid, spec)
            t1 = time.perf_counter()
            res = await sandbox.exec("ls | wc -l", timeout=30)
            t2 = time.perf_counter()
            assert res.exit_code == 0, res
            if i >= 2:  # two warm-up provisions
                rows[kind].append((t1 - t0) * 1000)
                if kind == "bare":
                    rows["bare+first"].append((t2 - t0) * 1000)
                if kind == "clone":
                    assert res.stdout.strip() == "20", res
                    rows["first"].append((t2 - t1) * 1000)
            await provider.destroy(sid)
    load_before = os.getloadavg()[0]
    cpu, machine = await provision_cpu(provider, runs, ready=False, background=background)
    cpu_ready, machine_ready = await provision_cpu(
        provider, runs, ready=True, background=background
    )
    load_after = os.getloadavg()[0]
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(where, ignore_errors=True)
    report(
        "sandbox" if not sandbox_dir else "sandbox-" + Path(sandbox_dir).name,
        {
            "sandbox dir": str(where.parent),
            "bwrap": bwrap or "not installed",
            "cgroups": provider.use_cgroups,
            "disk limit": "loop-mounted image" if provider.disks else provider.why_no_loop,
            "provision, no repo (ms)": summary(rows["bare"]),
            "provision + first command, no repo (ms)": summary(rows["bare+first"]),
            f"provision + clone of {files} files (ms)": summary(rows["clone"]),
            "first command after provision (ms)": summary(rows["first"]),
            "provision + destroy CPU, no repo (ms)": summary(cpu),
            "provision + `true` + destroy CPU, no repo (ms)": summary(cpu_ready),
            "the machine's CPU per provision + destroy (ms)": round(machine, 1),
            "the machine's CPU per provision + `true` + destroy (ms)": round(machine_ready, 1),
            "the machine's background (ms of CPU a second)": round(background, 1),
            "load average 1 min (before, after)": f"{load_before:.2f}, {load_after:.2f}",
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--sandbox-dir", help="where workspaces go, e.g. /dev/shm (a tmpfs)")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.files, args.sandbox_dir))
