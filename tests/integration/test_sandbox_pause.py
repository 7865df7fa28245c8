"""Pausing a sandbox: the local provider freezes its cgroup (a CPU-bound process in it
gets no CPU while frozen), thaws it on resume, destroys it frozen, and lists its
sandboxes for the reaper. Real bubblewrap and cgroups, where this machine has them."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from runyard.sandbox.base import SandboxSpec
from runyard.sandbox.local import LocalSandboxProvider
from runyard.sandbox.release import release_leftovers
from tests.conftest import poll_until
from tests.integration.cgroup_probe import (
    alive,
    cpu_ticks,
    freezer_dir,
    frozen,
    pids,
    spinner_in,
)

BWRAP = shutil.which("bwrap")


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[LocalSandboxProvider]:
    if BWRAP is None:
        pytest.skip("bubblewrap is not installed")
    p = LocalSandboxProvider(tmp_path / "sbx", bwrap=BWRAP)
    yield p
    for d in list(p.root.glob("sbx_*")):
        await p.destroy(d.name)


def _group_of(provider: LocalSandboxProvider, sandbox_id: str) -> Path:
    """The sandbox's freeze switch; skips only where the provider itself found no
    cgroups, so a group that is missing where there should be one fails the test."""
    if not provider.use_cgroups:
        pytest.skip("no writable cgroups on this machine")
    group = freezer_dir(sandbox_id)
    assert group is not None, "the sandbox's cgroup has a freeze switch"
    return group


async def test_a_paused_sandbox_uses_no_cpu_until_resumed(provider: LocalSandboxProvider) -> None:
    sb = await provider.create("sbx_pause", SandboxSpec(size="s"))
    await sb.exec("true", timeout=20)  # its runner started (behind create), in its cgroup
    group = _group_of(provider, sb.id)
    runner_pids = pids(group)
    assert runner_pids, "the sandbox's runner is in its cgroup"
    with spinner_in(group) as spinner:
        await poll_until(
            lambda: asyncio.sleep(0.05, cpu_ticks(spinner) > 0), "the spinner spinning"
        )
        await provider.pause(sb.id)
        await poll_until(lambda: asyncio.sleep(0, frozen(group)), "the cgroup frozen")
        await provider.pause(sb.id)  # already paused: a no-op
        before = [cpu_ticks(pid) for pid in [spinner, *runner_pids]]
        await asyncio.sleep(1.0)
        assert [cpu_ticks(pid) for pid in [spinner, *runner_pids]] == before
        await provider.resume(sb.id)
        assert not frozen(group)
        spun = cpu_ticks(spinner)
        await poll_until(
            lambda: asyncio.sleep(0.05, cpu_ticks(spinner) > spun), "the spinner running again"
        )
    res = await sb.exec("echo thawed", timeout=20)
    assert res.stdout.strip() == "thawed"


async def test_a_paused_sandbox_is_destroyed_whole(provider: LocalSandboxProvider) -> None:
    sb = await provider.create("sbx_frozen", SandboxSpec(size="s"))
    await sb.exec("true", timeout=20)  # its runner started (behind create), in its cgroup
    group = _group_of(provider, sb.id)
    runner_pids = pids(group)
    await provider.pause(sb.id)
    await poll_until(lambda: asyncio.sleep(0, frozen(group)), "the cgroup frozen")
    await provider.destroy(sb.id)
    assert not (provider.root / sb.id).exists()
    assert not group.exists()
    assert not [pid for pid in runner_pids if alive(pid)]
    await provider.pause(sb.id)  # gone: a no-op
    await provider.resume(sb.id)


async def test_list_ids_names_the_sandboxes(provider: LocalSandboxProvider) -> None:
    assert await provider.list_ids() == []
    await provider.create("sbx_b", SandboxSpec(size="s"))
    await provider.create("sbx_a", SandboxSpec(size="s"))
    assert await provider.list_ids() == ["sbx_a", "sbx_b"]
    await provider.destroy("sbx_a")
    assert await provider.list_ids() == ["sbx_b"]


async def test_without_a_freezer_pausing_is_a_no_op_said_once(tmp_path: Path) -> None:
    p = LocalSandboxProvider(tmp_path / "sbx", bwrap=BWRAP, use_cgroups=False, disk="off")
    sb = await p.create("sbx_nofreeze", SandboxSpec(size="s"))
    try:
        with capture_logs() as logs:
            await p.pause(sb.id)
            await p.pause(sb.id)
            await p.resume(sb.id)
        said = [e for e in logs if e["event"] == "sandbox.pause_unsupported"]
        assert len(said) == 1 and "keeps running" in said[0]["reason"]
        assert (await sb.exec("echo still-running", timeout=20)).stdout == "still-running\n"
    finally:
        await p.destroy(sb.id)


async def test_what_a_killed_worker_left_is_released_by_dir(
    provider: LocalSandboxProvider,
) -> None:
    """``runyard dev`` after its worker was killed outright (a second Ctrl-C) or at its
    next start: a frozen sandbox's processes (state D under pid 1 until thawed), its
    cgroups and its disk mount go, found by the data dir's sandboxes/ and the cgroup's
    name; its files stay for the run."""
    sb = await provider.create(f"sbx_left{secrets.token_hex(4)}", SandboxSpec(size="s"))
    await sb.exec("true", timeout=20)  # its runner started, in its cgroup
    group = _group_of(provider, sb.id)
    runner_pids = pids(group)
    assert runner_pids
    await provider.pause(sb.id)
    await poll_until(lambda: asyncio.sleep(0, frozen(group)), "the cgroup frozen")
    # Nothing of the provider's own release: as if its worker was killed.
    assert release_leftovers(provider.root) == 1
    assert not [pid for pid in runner_pids if alive(pid)]
    assert not group.exists()
    assert not os.path.ismount(provider.root / sb.id / "disk")
    assert (provider.root / sb.id / "meta.json").exists()
    assert release_leftovers(provider.root) == 0  # nothing left: a no-op
