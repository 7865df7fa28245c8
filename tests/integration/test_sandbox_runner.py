"""The sandbox runner against what an agent can make: FIFOs, huge sparse files, orphans,
a stopped or killed runner, and the limits of its size (CPU, disk). Real bubblewrap,
real cgroups and loop mounts where this machine has them."""

from __future__ import annotations

import asyncio
import hashlib
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from runyard.sandbox import local, local_sandbox
from runyard.sandbox.base import (
    ResourceLimitExceeded,
    SandboxSpec,
    SandboxUnavailable,
    ToolError,
)
from runyard.sandbox.capped import TooLarge, read_capped
from runyard.sandbox.disk import loop_mounts_possible
from runyard.sandbox.isolation import SECRET_PREFIXES
from runyard.sandbox.local import LocalSandboxProvider
from runyard.tools import run_tool
from tests.conftest import poll_until

BWRAP = shutil.which("bwrap")


@pytest.fixture
async def made(tmp_path: Path) -> AsyncIterator[list[LocalSandboxProvider]]:
    """Providers a test builds itself; their sandboxes are destroyed (unmounted) after."""
    providers: list[LocalSandboxProvider] = []
    yield providers
    for p in providers:
        for d in list(p.root.glob("sbx_*")):
            await p.destroy(d.name)


def _pgrep(marker: str) -> str:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.strip()


async def test_fifo_and_a_1_gib_sparse_file_are_read_bounded(
    provider: LocalSandboxProvider,
) -> None:
    sb = await provider.create("sbx_reads", SandboxSpec(size="s"))
    res = await sb.exec("mkfifo f && ln -s f via-link && truncate -s 1G big", timeout=10)
    assert res.exit_code == 0, res
    for path in ("f", "via-link"):
        out = await asyncio.wait_for(run_tool(sb, "read_file", {"path": path}, timeout=10), 10)
        assert out.is_error and "FIFO" in out.text, out
    edit = {"path": "f", "old_string": "a", "new_string": "b"}
    assert (await asyncio.wait_for(run_tool(sb, "edit_file", edit, timeout=10), 10)).is_error
    write = {"path": "f", "content": "x"}
    assert (await asyncio.wait_for(run_tool(sb, "write_file", write, timeout=10), 10)).is_error
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = await run_tool(sb, "read_file", {"path": "big"}, timeout=10)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert not out.is_error and "the file is 1073741824 bytes" in out.text
    assert len(out.text) < 31_000 and grown_mb < 100, (len(out.text), grown_mb)
    # A directory and a missing file are clear errors; the sandbox still works after all.
    assert "directory" in (await run_tool(sb, "read_file", {"path": "."}, timeout=10)).text
    assert (await run_tool(sb, "read_file", {"path": "nope"}, timeout=10)).is_error
    assert (await sb.exec("echo ok", timeout=10)).stdout == "ok\n"


async def test_no_process_outlives_its_call(provider: LocalSandboxProvider) -> None:
    sb = await provider.create("sbx_orphans2", SandboxSpec())
    marker = f"orph{os.getpid()}x{id(sb)}"  # unique on a machine shared by test runs
    cmd = (
        f"setsid bash -c 'exec -a {marker}-a sleep 300' > /dev/null 2>&1 & "
        f"( (exec -a {marker}-b sleep 300) & ) > /dev/null 2>&1; "
        f"nohup bash -c 'exec -a {marker}-c sleep 300' > /dev/null 2>&1 & "
        "sleep 0.2; echo started"
    )
    res = await sb.exec(cmd, timeout=10)
    assert res.stdout == "started\n", res
    await asyncio.sleep(0.2)
    assert _pgrep(marker) == ""
    # A cancelled call (the run was cancelled) kills its processes too.
    task = asyncio.create_task(sb.exec(f"exec -a {marker}-d sleep 300", timeout=60))
    for _ in range(50):
        if _pgrep(marker):
            break
        await asyncio.sleep(0.1)
    assert _pgrep(marker)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(50):
        if not _pgrep(marker):
            break
        await asyncio.sleep(0.1)
    assert _pgrep(marker) == ""


async def test_the_sandbox_environment_holds_no_secret(
    provider: LocalSandboxProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "RUNYARD_GIT_TOKEN",
        "TEMPORAL_ADDRESS",
        "ANTHROPIC_API_KEY",
        "E2B_API_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "GIT_ASKPASS",
        "GITHUB_TOKEN",
    ):
        monkeypatch.setenv(name, "s3cret-value")
    sb = await provider.create("sbx_env", SandboxSpec(env={"MINE": "ok"}))
    res = await sb.exec("env; cat /proc/self/environ | tr '\\0' '\\n'", timeout=10)
    names = {line.split("=", 1)[0] for line in res.stdout.splitlines() if "=" in line}
    assert "MINE" in names and "s3cret-value" not in res.stdout
    assert not [n for n in names if n.startswith(SECRET_PREFIXES)], names


async def test_unisolated_is_announced_loudly(tmp_path: Path) -> None:
    with capture_logs() as logs:
        LocalSandboxProvider(tmp_path / "sbx", bwrap=None)
    loud = [e for e in logs if e["event"] == "sandbox.UNISOLATED"]
    assert loud and loud[0]["log_level"] == "warning" and "NOT isolated" in loud[0]["message"]


async def test_bwrap_missing_means_unavailable(tmp_path: Path) -> None:
    p = LocalSandboxProvider(tmp_path / "sbx", bwrap="/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable, match="bubblewrap") as err:
        await p.create("sbx_none", SandboxSpec())
    assert err.value.permanent
    with pytest.raises(SandboxUnavailable):
        await p.get("sbx_none")
    assert local.bwrap_path("off") is None


def _runner_pid(provider: LocalSandboxProvider, sandbox_id: str) -> int:
    """The runner's pid as the host sees it: the process bubblewrap started (or the one
    the provider started, unisolated)."""
    pid = provider._runners[sandbox_id].proc.pid
    if provider.bwrap is None:
        return pid
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(kids) == 1, kids  # --as-pid-1: no bubblewrap init between
    return int(kids[0])


async def test_a_stopped_or_killed_runner_fails_one_call_and_is_restarted(
    provider: LocalSandboxProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_sandbox, "EXEC_GRACE", 1.0)
    sb = await provider.create("sbx_stuck", SandboxSpec())
    await sb.write_file("kept.txt", b"kept")
    if provider.bwrap:  # pid 1 of the sandbox: no command can stop, interrupt or kill it
        cmd = "kill -STOP 1; kill -INT 1; kill -TERM 1; kill -9 1; echo alive"
        out = await run_tool(sb, "bash", {"command": cmd}, timeout=10)
        assert "alive" in out.text and "exit code: 0" in out.text, out
    os.kill(_runner_pid(provider, sb.id), signal.SIGSTOP)  # as a command could unisolated
    out = await run_tool(sb, "bash", {"command": "sleep 1"}, timeout=1)
    assert out.is_error and "did not answer" in out.text and "restarted" in out.text, out
    marker = f"left{os.getpid()}x{id(sb)}"
    task = asyncio.create_task(
        run_tool(sb, "bash", {"command": f"(exec -a {marker} sleep 300) & sleep 5"}, timeout=10)
    )

    async def started() -> bool:
        return _pgrep(marker) != ""

    await poll_until(started, "the command's start")
    os.kill(_runner_pid(provider, sb.id), signal.SIGKILL)
    out = await task
    assert out.is_error and "exited" in out.text and "restarted" in out.text, out
    assert (await run_tool(sb, "read_file", {"path": "kept.txt"}, timeout=10)).text == "kept"
    if provider.use_cgroups or provider.bwrap:  # what the dead runner's command left is gone
        assert _pgrep(marker) == ""
    if provider.bwrap:  # the runner's protocol pipes are out of the commands' reach
        res = await sb.exec("ls /proc/$PPID/fd; echo x > /proc/$PPID/fd/1", timeout=10)
        assert res.exit_code != 0 and "Permission denied" in res.stderr, res


@pytest.mark.skipif(BWRAP is None, reason="bubblewrap is not installed")
async def test_no_command_reaches_the_runners_pipes(
    tmp_path: Path, made: list[LocalSandboxProvider]
) -> None:
    """Every process a command can see is tried: none lets it read the worker's requests
    or write an answer (a forged result for its own call, here) on the runner's channel."""
    p = LocalSandboxProvider(tmp_path / "sbx", bwrap=BWRAP)
    made.append(p)
    sb = await p.create("sbx_pipes", SandboxSpec())
    forge = (
        "import json, os, struct\n"
        "rid = int(os.environ['SANDBOX_CALL_ID'])\n"
        "ok = {'exit_code': 0, 'stdout': 'FORGED', 'stderr': '', 'timed_out': False}\n"
        "body = json.dumps({'id': rid, 'ok': ok}).encode()\n"
        "frame = struct.pack('>I', len(body)) + body\n"
        "for pid in sorted(p for p in os.listdir('/proc') if p.isdigit()):\n"
        "    if int(pid) == os.getpid():\n"
        "        continue\n"
        "    for fd in ('0', '1'):\n"
        "        try:\n"
        "            w = os.open(f'/proc/{pid}/fd/{fd}', os.O_WRONLY | os.O_NONBLOCK)\n"
        "            os.write(w, frame)\n"
        "            print('wrote', pid, fd)\n"
        "        except OSError as exc:\n"
        "            print('refused', pid, fd, exc.errno)\n"
        "import time; time.sleep(1)\n"
        "print('real answer')\n"
    )
    await sb.write_file("forge.py", forge.encode())
    res = await sb.exec("python3 forge.py", timeout=20)
    assert "FORGED" not in res.stdout and "real answer" in res.stdout, res
    assert "wrote" not in res.stdout and "refused 1 1" in res.stdout, res
    assert (await sb.exec("echo next", timeout=10)).stdout == "next\n"


async def test_a_restarted_worker_gets_a_new_runner_on_the_same_workspace(
    provider: LocalSandboxProvider, made: list[LocalSandboxProvider]
) -> None:
    sb = await provider.create("sbx_restart", SandboxSpec())
    await sb.exec("echo hi > f", timeout=10)
    first = provider._runners["sbx_restart"].proc.pid
    await provider.stop_runner(sb.id)  # the worker died: its runners died with it
    again = LocalSandboxProvider(provider.root, bwrap=provider.bwrap)
    made.append(again)
    sb2 = await again.get("sbx_restart")
    assert (await sb2.exec("cat f", timeout=10)).stdout == "hi\n"
    assert again._runners["sbx_restart"].proc.pid != first
    await again.destroy("sbx_restart")


@pytest.mark.skipif(BWRAP is None, reason="bubblewrap is not installed")
async def test_the_local_remote_is_writable_but_not_its_hooks_or_config(
    tmp_path: Path, made: list[LocalSandboxProvider]
) -> None:
    p = LocalSandboxProvider(tmp_path / "sbx", bwrap=BWRAP)
    made.append(p)
    sb = await p.create("sbx_remote", SandboxSpec())
    bare = sb.workspace.parent / "remote" / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    await p.stop_runner(sb.id)  # the next call's runner sees the remote
    res = await sb.exec(
        "cd /runyard/remote/origin.git && touch refs/heads/ok && echo w1; "
        "touch hooks/pre-receive || echo ro1; echo x >> config || echo ro2; "
        # Nor can they be swapped for the agent's own: origin.git is not renamed away.
        "cd /runyard/remote && { mv origin.git old || echo ro3; }; "
        "{ mv origin.git/hooks origin.git/h || echo ro4; }; { mkdir other || echo ro5; }",
        timeout=10,
    )
    assert res.stdout.split() == ["w1", "ro1", "ro2", "ro3", "ro4", "ro5"], res
    assert (bare / "refs" / "heads" / "ok").exists()
    assert not (bare / "hooks" / "pre-receive").exists()
    await p.destroy(sb.id)


@pytest.mark.skipif(
    BWRAP is None or loop_mounts_possible() is not None, reason="needs bwrap and loop mounts"
)
async def test_everything_a_sandbox_can_write_counts_against_its_disk(
    tmp_path: Path, made: list[LocalSandboxProvider]
) -> None:
    p = LocalSandboxProvider(tmp_path / "sbx", bwrap=BWRAP)
    made.append(p)
    sb = await p.create("sbx_quota", SandboxSpec(size="s"))  # 5120 MiB
    bare = sb.workspace.parent / "remote" / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    await p.stop_runner(sb.id)  # the next call's runner sees the remote
    places = (
        "/ /etc /usr /opt /runyard /runyard/remote /runyard/remote/origin.git /dev /dev/shm "
        "/dev/pts /tmp $HOME /var /run /root /proc /workspace"
    )
    res = await sb.exec(
        f"for d in {places}; do touch $d/.w 2>/dev/null && echo $d $(stat -c %d $d); done",
        timeout=10,
    )
    writable = dict(line.split() for line in res.stdout.splitlines())
    assert set(writable) == {
        "/runyard/remote/origin.git",
        "/dev/shm",
        "/tmp",
        "/workspace",
    }, res
    assert len(set(writable.values())) == 1, writable  # one device: the sandbox's image
    # 700 MB written through the remote are 700 MB less on the sandbox's disk.
    used = "df -B1M --output=used /workspace | tail -1"
    before = int((await sb.exec(used, timeout=10)).stdout)
    await sb.exec("fallocate -l 700M /runyard/remote/origin.git/big", timeout=30)
    assert int((await sb.exec(used, timeout=10)).stdout) - before >= 700
    await sb.exec("rm /runyard/remote/origin.git/big", timeout=10)
    for where in ("/runyard/remote/origin.git", "/tmp", "/dev/shm"):
        with pytest.raises(ResourceLimitExceeded, match="disk is full"):
            await sb.exec(f"fallocate -l 3G {where}/a; fallocate -l 3G {where}/b", timeout=30)
        await sb.exec(f"rm -f {where}/a {where}/b", timeout=10)
    await p.destroy(sb.id)


def _cpu_limited(p: LocalSandboxProvider) -> bool:
    return (p.use_cgroups and Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists()) or (
        Path("/sys/fs/cgroup/cgroup.controllers").exists()
        and "cpu" in Path("/sys/fs/cgroup/cgroup.controllers").read_text()
    )


async def test_a_cpu_bound_loop_gets_the_share_of_its_size(
    tmp_path: Path, made: list[LocalSandboxProvider]
) -> None:
    p = LocalSandboxProvider(tmp_path / "sbx", bwrap=BWRAP)
    made.append(p)
    if not _cpu_limited(p):
        pytest.skip("no writable cpu cgroup controller here")
    sb = await p.create("sbx_cpu", SandboxSpec(size="s"))  # 1000 millicores: one CPU
    group = p.cgroup(sb)
    assert group is not None and group.cpu_limited
    # Two busy processes for 2 s of wall time; unlimited, they would use up to 2 CPUs.
    res = await sb.exec(
        "python3 -c '\nimport os, time\nt = time.time()\npid = os.fork()\n"
        "while time.time() - t < 2: pass\nif pid: os.waitpid(pid, 0); "
        "c = os.times(); print((c.user + c.system + c.children_user + c.children_system) / "
        "(time.time() - t))\n'",
        timeout=30,
    )
    share = float(res.stdout.strip())
    assert share < 1.25, res
    # The quota is the size's, and the sandbox's processes are the ones it applies to.
    cpu_dir = next(d for d in group.dirs if "cpu" in d.parts or (d / "cpu.max").exists())
    quota = cpu_dir / "cpu.cfs_quota_us"
    limit = quota.read_text() if quota.exists() else (cpu_dir / "cpu.max").read_text()
    assert limit.split()[0] == "100000", limit
    assert (cpu_dir / "cgroup.procs").read_text().split()
    await p.destroy(sb.id)


@pytest.mark.skipif(loop_mounts_possible() is not None, reason="no loop mounts here")
async def test_filling_the_disk_is_a_resource_limit(
    tmp_path: Path, made: list[LocalSandboxProvider]
) -> None:
    p = LocalSandboxProvider(tmp_path / "sbx", bwrap=BWRAP)
    made.append(p)
    sb = await p.create("sbx_disk", SandboxSpec(size="s"))  # 5120 MiB
    df = await sb.exec("df -m --output=size . | tail -1", timeout=10)
    assert 4900 < int(df.stdout) <= 5120, df
    with pytest.raises(ResourceLimitExceeded, match="disk is full"):
        await run_tool(sb, "bash", {"command": "fallocate -l 3G a; fallocate -l 3G b"}, timeout=30)
    await sb.exec("rm a b", timeout=10)
    with pytest.raises(ResourceLimitExceeded):
        await sb.exec("fallocate -l 3G a; fallocate -l 3G b", timeout=30)
    with pytest.raises(ResourceLimitExceeded):
        await sb.write_file("x", b"x")
    await sb.exec("rm a b", timeout=10)
    # Out of inodes (~160,000 empty files, in /tmp) is a full disk too.
    fill = (
        "python3 -c '\nimport os\nn = 0\ntry:\n    while True:\n"
        '        os.mknod("/tmp/f%d" % n); n += 1\nexcept OSError: pass\n\''
    )
    with pytest.raises(ResourceLimitExceeded, match="inodes"):
        await run_tool(sb, "bash", {"command": fill}, timeout=120)
    await p.destroy(sb.id)
    assert not sb.root.exists()


async def test_large_files_are_read_whole_in_chunks(
    provider: LocalSandboxProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One runner answer is at most MAX_FRAME (4 MiB): a 10 MB file (a push's bundle, a
    patch, an artifact) crosses in chunks, whole; a file that changes meanwhile is refused."""
    sb = await provider.create("sbx_large", SandboxSpec())
    res = await sb.exec("head -c 10000000 /dev/urandom > big && sha256sum big", timeout=30)
    data = await read_capped(sb, "big", 100 * 1024 * 1024)
    assert hashlib.sha256(data).hexdigest() == res.stdout.split()[0], len(data)
    with pytest.raises(TooLarge):
        await read_capped(sb, "big", 9_999_999)
    part = await sb.read_file("big", max_bytes=2_500_000)  # a cap inside a chunk
    assert part.data == data[:2_500_000] and part.size == 10_000_000 and part.truncated

    # 2,000 names of ~4,000 characters: a list answer stays one frame, it stops earlier.
    deep = "/".join(["d" * 250] * 15)
    res = await sb.exec(
        f"mkdir -p {deep} && cd {deep} && n=$(printf 'f%.0s' $(seq 200)) && "
        "for i in $(seq 2000); do : > $n$i; done",
        timeout=60,
    )
    assert res.exit_code == 0, res
    files = await sb.list_files(".", max_entries=2000)
    assert 200 < len(files) < 2000 and sum(map(len, files)) < 1100 * 1024, len(files)
    # Names of control characters take 6 bytes each in the answer's JSON: still one frame.
    res = await sb.exec(
        'python3 -c \'\nimport os\nd = "ctl/" + "/".join(["\\x01" * 250] * 15)\n'
        "os.makedirs(d)\nfor i in range(2000):\n"
        '    open(os.path.join(d, "\\x01" * 200 + str(i)), "w").close()\n\'',
        timeout=60,
    )
    assert res.exit_code == 0, res
    files = await sb.list_files("ctl", max_entries=2000)
    assert 20 < len(files) < 2000 and files[0].startswith("ctl/\x01"), len(files)

    monkeypatch.setattr(local_sandbox, "READ_CHUNK", 1000)
    await sb.write_file("grows", b"x" * 5000)
    original, reads = sb._call, []

    async def appending(op: str, args: dict[str, Any], **kw: Any) -> dict[str, Any]:
        if op == "read":
            reads.append(args["offset"])
            if len(reads) == 2:  # between two chunks, a command appends to the file
                await original(
                    "exec",
                    {"command": "echo more >> grows", "timeout": 10, "cap": 100},
                    deadline=20,
                )
        return await original(op, args, **kw)

    monkeypatch.setattr(sb, "_call", appending)
    with pytest.raises(ToolError, match="changed while it was read"):
        await sb.read_file("grows", max_bytes=100_000)
    assert reads == [0, 1000]


async def test_tool_errors_are_results(provider: LocalSandboxProvider) -> None:
    sb = await provider.create("sbx_errs", SandboxSpec())
    with pytest.raises(ToolError, match="outside the workspace"):
        await sb.read_file("/etc/passwd", max_bytes=10)
    with pytest.raises(ToolError, match="occurs 0 times"):
        await sb.write_file("a", b"abc")
        await sb.edit_file("a", "zz", "y")


@pytest.mark.skipif(
    BWRAP is None or shutil.which("slirp4netns") is None, reason="needs bwrap and slirp4netns"
)
async def test_network_is_the_sandboxes_own_never_the_hosts_loopback(
    tmp_path: Path, made: list[LocalSandboxProvider]
) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    p = LocalSandboxProvider(tmp_path / "sbx", bwrap=BWRAP)
    made.append(p)
    probe = (
        "ip -4 -o addr show | awk '{print $2, $4}'; ip route | head -1; "
        f"for h in 127.0.0.1 10.0.2.2; do (exec 3<>/dev/tcp/$h/{port}) 2>/dev/null "
        "&& echo reached-$h || echo refused-$h; done"
    )
    closed = await p.create("sbx_nonet", SandboxSpec())
    out = (await closed.exec(probe, timeout=20)).stdout
    assert "tap0" not in out and "reached" not in out, out
    sb = await p.create("sbx_net", SandboxSpec(network=True))
    out = (await sb.exec(probe + "; cat /etc/resolv.conf", timeout=20)).stdout
    assert "tap0 10.0.2.100/24" in out and "default via 10.0.2.2" in out, out
    assert "reached" not in out and "nameserver 10.0.2.3" in out, out
    slirp = subprocess.run(["pgrep", "-x", "slirp4netns"], capture_output=True, text=True)
    assert slirp.stdout.strip(), "slirp4netns runs beside the sandbox"
    await p.destroy(sb.id)
    server.close()


async def test_a_relative_sandbox_dir_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, made: list[LocalSandboxProvider]
) -> None:
    monkeypatch.chdir(tmp_path)  # RUNYARD_SANDBOX_DIR=sbx-rel, say
    p = LocalSandboxProvider(Path("sbx-rel"), bwrap=BWRAP)
    made.append(p)
    sb = await p.create("sbx_rel", SandboxSpec())
    assert (await sb.exec("pwd", timeout=10)).stdout.strip() in ("/workspace", str(sb.workspace))
