"""How the sandbox runner starts and starts commands: its bytecode, compiled once per
data dir, and what a command inherits (descriptors, signals, session, directory)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from runyard.sandbox.base import SandboxSpec
from runyard.sandbox.local import LocalSandboxProvider

BWRAP = shutil.which("bwrap")


async def test_a_command_inherits_only_its_pipes_default_signals_and_a_session(
    provider: LocalSandboxProvider,
) -> None:
    sb = await provider.create("sbx_clean", SandboxSpec())
    # What the command itself holds (3: ls's own listing of /proc/self/fd).
    fds = await sb.exec("exec ls /proc/self/fd", timeout=20)
    assert fds.stdout.split() == ["0", "1", "2", "3"], fds  # nothing of the runner's
    res = await sb.exec(
        "cut -d' ' -f6 /proc/$$/stat; echo $$; pwd; echo err >&2;"
        " exec grep -E '^Sig(Ign|Blk)' /proc/self/status",
        timeout=20,
    )
    session, pid, cwd, blk, ign = res.stdout.splitlines()
    # SIGPIPE and SIGXFSZ (which Python ignores) are back to their defaults. glibc's
    # posix_spawn leaves its own two signals (32, 33) ignored: no program can use them.
    assert int(ign.split()[1], 16) & ~(1 << 31 | 1 << 32) == 0, res
    assert blk.split() == ["SigBlk:", "0000000000000000"], res
    assert session == pid, res  # its own session: the call's end kills its group
    assert cwd == ("/workspace" if provider.bwrap else str(sb.workspace)), res
    assert res.stderr == "err\n" and res.exit_code == 0
    limits = await sb.exec("umask; ulimit -f; ulimit -c", timeout=10)
    disk_kib = sb.spec.resources["diskMi"] * 1024  # confined by pid, from the worker
    assert limits.stdout.split() == ["0022", str(disk_kib), "0"], limits
    assert (await sb.exec("exit 3", timeout=10)).exit_code == 3
    assert (await sb.exec("kill -TERM $$", timeout=10)).exit_code == -15


@pytest.mark.skipif(BWRAP is None, reason="bubblewrap is not installed")
async def test_the_runner_in_a_sandbox_loads_its_precompiled_bytecode(tmp_path: Path) -> None:
    p = LocalSandboxProvider(tmp_path / "sbx", bwrap=BWRAP)
    try:
        sb = await p.create("sbx_pyc", SandboxSpec())
        # Python in the sandbox says which bytecode matched which source (-v).
        res = await sb.exec(
            "python3 -I -S -v -c 'import sys; sys.path.insert(0, \"/runyard\"); import runner'"
            " 2>&1 | grep ' matches /runyard/'",
            timeout=20,
        )
        matched = sorted(line.rsplit("/", 1)[-1] for line in res.stdout.splitlines())
        assert matched == ["runner.py", "runner_procs.py"], res
        assert p.bytecode.path.is_dir() and p.bytecode.path.parent.parent == p.root / ".runner"
        # A stale copy is refused by its hash, never run: the source is compiled instead.
        for pyc in p.bytecode.path.iterdir():
            pyc.chmod(0o644)
        stale = next(p.bytecode.path.glob("runner_procs.*.pyc"))
        data = bytearray(stale.read_bytes())
        data[8:16] = bytes(8)  # the source hash of a checked pyc (PEP 552)
        stale.write_bytes(bytes(data))
        await p.stop_runner(sb.id)
        assert (await sb.exec("echo still", timeout=20)).stdout == "still\n"
    finally:
        for d in list(p.root.glob("sbx_*")):
            await p.destroy(d.name)


async def test_a_closed_runner_exits_by_itself_and_a_stuck_one_is_killed(
    provider: LocalSandboxProvider,
) -> None:
    sb = await provider.create("sbx_close", SandboxSpec())
    assert (await sb.exec("echo up", timeout=10)).stdout == "up\n"
    runner = provider._runners[sb.id]
    await provider.stop_runner(sb.id)
    # It exited on the end of its stdin (bubblewrap passes on its code): not a SIGKILL.
    assert runner.proc.returncode == 0
    assert (await sb.exec("echo again", timeout=10)).stdout == "again\n"
    stuck = provider._runners[sb.id]
    # Stopped: the runner itself, or bubblewrap, which then never passes on its exit.
    os.kill(stuck.proc.pid, signal.SIGSTOP)
    started = time.monotonic()
    await provider.stop_runner(sb.id)
    assert stuck.proc.returncode == -signal.SIGKILL
    assert 0.9 < time.monotonic() - started < 5
