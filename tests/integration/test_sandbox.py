"""The local sandbox with real processes (under bubblewrap when it is installed)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runyard.sandbox.base import ResourceLimitExceeded, SandboxError, SandboxSpec
from runyard.sandbox.local import LocalSandboxProvider
from runyard.tools import run_tool

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed"
)


@pytest.fixture(params=["bwrap", "plain"])
async def provider(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[LocalSandboxProvider]:
    if request.param == "bwrap" and shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    p = _provider(request, tmp_path)
    yield p
    for d in list(p.root.glob("sbx_*")) if p.root.exists() else []:
        await p.destroy(d.name)


def _provider(request: pytest.FixtureRequest, tmp_path: Path) -> LocalSandboxProvider:
    return LocalSandboxProvider(
        tmp_path / "sandboxes", bwrap=shutil.which("bwrap") if request.param == "bwrap" else None
    )


async def test_files_stay_in_the_workspace(provider: LocalSandboxProvider, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cret")
    sb = await provider.create("sbx_files", SandboxSpec(size="s"))
    out = await run_tool(sb, "write_file", {"path": "dir/a.txt", "content": "hi"}, timeout=10)
    assert not out.is_error
    assert (
        await run_tool(sb, "read_file", {"path": "/workspace/dir/a.txt"}, timeout=10)
    ).text == "hi"
    for path in ("../../secret", "/etc/passwd", str(tmp_path / "secret"), "dir/../../x"):
        res = await run_tool(sb, "read_file", {"path": path}, timeout=10)
        assert res.is_error and "outside the workspace" in res.text, (path, res)
    (sb.workspace / "link").symlink_to(tmp_path / "secret")
    res = await run_tool(sb, "read_file", {"path": "link"}, timeout=10)
    assert res.is_error and "outside" in res.text
    res = await run_tool(
        sb, "edit_file", {"path": "dir/a.txt", "old_string": "zz", "new_string": "y"}, timeout=10
    )
    assert res.is_error and "0 times" in res.text
    assert (await run_tool(sb, "list_files", {}, timeout=10)).text.splitlines() == [
        "link",
        "dir/a.txt",
    ]
    assert (await run_tool(sb, "nope", {}, timeout=10)).is_error
    assert (await run_tool(sb, "bash", {"command": 5}, timeout=10)).is_error


async def test_bash_timeout_and_exit_codes(provider: LocalSandboxProvider) -> None:
    sb = await provider.create("sbx_bash", SandboxSpec())
    res = await sb.exec("echo out; echo err >&2; exit 3", timeout=10)
    assert (res.exit_code, res.stdout, res.stderr) == (3, "out\n", "err\n")
    t0 = asyncio.get_running_loop().time()
    res = await sb.exec("sleep 30", timeout=0.5)
    assert res.timed_out and asyncio.get_running_loop().time() - t0 < 5
    big = await sb.exec("head -c 500000 /dev/zero | tr '\\0' a", timeout=10)
    assert len(big.stdout) < 120_000 and "bytes cut" in big.stdout


@needs_bwrap
async def test_bwrap_isolation(tmp_path: Path) -> None:
    provider = LocalSandboxProvider(tmp_path / "sandboxes", bwrap=shutil.which("bwrap"))
    sb = await provider.create("sbx_iso", SandboxSpec())
    res = await sb.exec("cat /etc/shadow; ls /root; ls " + str(tmp_path), timeout=10)
    assert res.exit_code != 0 and "root:" not in res.stdout
    net = await sb.exec(
        "python3 -c \"import socket; socket.create_connection(('127.0.0.1', 5432), 2)\" "
        "|| bash -c 'echo > /dev/tcp/127.0.0.1/5432'",
        timeout=10,
    )
    assert net.exit_code != 0
    assert (await sb.exec("pwd; touch /usr/x", timeout=10)).stdout.startswith("/workspace")
    # No capability, and the host's sysctls are read-only (root may write them otherwise).
    res = await sb.exec(
        "grep CapEff /proc/self/status; cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness",
        timeout=10,
    )
    assert "CapEff:\t0000000000000000" in res.stdout and "Read-only" in res.stderr, res
    await provider.destroy(sb.id)


async def test_destroy_kills_processes_and_removes_the_directory(
    provider: LocalSandboxProvider,
) -> None:
    sb = await provider.create("sbx_gone", SandboxSpec())
    task = asyncio.create_task(sb.exec("sleep 60", timeout=120))
    await asyncio.sleep(0.5)
    await provider.destroy("sbx_gone")
    with pytest.raises(SandboxError, match="destroyed"):
        await asyncio.wait_for(task, 5)
    assert not sb.root.exists()
    with pytest.raises(SandboxError):
        await provider.get("sbx_gone")
    await provider.destroy("sbx_gone")  # idempotent
    with pytest.raises(SandboxError):
        await provider.get("../etc")


async def test_the_runner_starts_behind_create_and_a_destroy_waits_for_it(
    provider: LocalSandboxProvider,
) -> None:
    """create returns before the runner is up; the first call waits for it, and a destroy
    right after create leaves no runner behind."""
    sb = await provider.create("sbx_soon", SandboxSpec())
    assert "sbx_soon" in provider._starting
    assert (await sb.exec("echo up", timeout=10)).stdout.strip() == "up"
    await provider.destroy("sbx_soon")

    await provider.create("sbx_brief", SandboxSpec())
    starting = provider._starting["sbx_brief"]
    await provider.destroy("sbx_brief")
    runner = starting.result()
    assert not runner.alive and runner.proc.returncode is not None
    assert "sbx_brief" not in provider._runners


async def test_create_is_idempotent_and_clones(
    provider: LocalSandboxProvider, tmp_path: Path
) -> None:
    with pytest.raises(SandboxError, match="git clone"):
        await provider.create("sbx_noclone", SandboxSpec(repo_url=str(tmp_path / "missing")))
    # The provider never runs the setup script: the setup_sandbox activity does, through
    # exec, for every provider (tests/integration/test_setup_activity.py).
    sb = await provider.create("sbx_twice", SandboxSpec(setup_script="echo ran > setup.txt"))
    await sb.write_file("kept.txt", b"kept")
    again = await provider.create("sbx_twice", SandboxSpec())
    assert again.root == sb.root and (sb.workspace / "kept.txt").read_bytes() == b"kept"
    assert not (sb.workspace / "setup.txt").exists()


@pytest.mark.skipif(
    not Path("/sys/fs/cgroup/memory").is_dir()
    and not Path("/sys/fs/cgroup/cgroup.controllers").exists(),
    reason="no cgroups on this machine",
)
async def test_memory_limit_and_fork_bomb_are_contained(provider: LocalSandboxProvider) -> None:
    if not provider.use_cgroups:
        pytest.skip("cgroups are not writable here")
    sb = await provider.create("sbx_limits", SandboxSpec(size="s"))  # 2048 MiB
    hog = await sb.exec("python3 -c 'x = bytearray(3 * 1024**3); print(len(x))'", timeout=60)
    assert hog.oom_killed and hog.exit_code != 0
    with pytest.raises(ResourceLimitExceeded):
        await run_tool(
            sb, "bash", {"command": "python3 -c 'x = bytearray(3 * 1024**3)'"}, timeout=60
        )
    small = await sb.exec("python3 -c 'x = bytearray(100 * 1024**2); print(len(x))'", timeout=60)
    assert not small.oom_killed and small.exit_code == 0
    t0 = asyncio.get_running_loop().time()
    bomb = await sb.exec("bomb() { bomb | bomb & }; bomb; sleep 3; echo survived", timeout=20)
    assert asyncio.get_running_loop().time() - t0 < 20 and not bomb.timed_out
    after = await sb.exec("echo still-usable", timeout=10)
    assert after.stdout == "still-usable\n"


async def test_commands_leave_no_processes_behind(provider: LocalSandboxProvider) -> None:
    sb = await provider.create("sbx_orphans", SandboxSpec())
    marker = f"orphan-{sb.id}"
    res = await sb.exec(f"(exec -a {marker} sleep 300) > /dev/null 2>&1 & echo started", timeout=10)
    assert res.stdout == "started\n"
    await asyncio.sleep(0.3)
    ps = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert ps.stdout.strip() == "", ps.stdout
