"""The relay against real git and a real local sandbox (bubblewrap when installed), without
a stack: what it forwards into a local repository, and that nothing leaves once the run
has ended (``Relay.active``); and the modes of the checkout the agent gets."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runyard.git import relay as relay_module
from runyard.git.relay import Relay, describe
from runyard.git.remote import upstream_access
from runyard.sandbox.base import SandboxSpec
from runyard.sandbox.local import LocalSandbox, LocalSandboxProvider
from runyard.settings import Settings
from tests.integration.git_support import git, make_remote, refs


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[LocalSandboxProvider]:
    p = LocalSandboxProvider(tmp_path / "sandboxes", bwrap=shutil.which("bwrap"))
    yield p
    for d in list(p.root.glob("sbx_*")) if p.root.exists() else []:
        await p.destroy(d.name)


async def _sandbox(provider: LocalSandboxProvider, repo: Path, sid: str) -> LocalSandbox:
    return await provider.create(sid, SandboxSpec(size="s", repo_url=str(repo)))


async def _push(sb: LocalSandbox, *branches: str) -> None:
    specs = " ".join(f"HEAD:refs/heads/{b}" for b in branches)
    res = await sb.exec(
        f"git commit -q --allow-empty -m work && git push -q origin {specs}", timeout=30
    )
    assert res.exit_code == 0, res.stdout


def _relay(provider: LocalSandboxProvider, sb: LocalSandbox, settings: Settings) -> Relay:
    return Relay(sb, provider.root / sb.id / "mirror.git", settings)


async def test_a_local_repository_takes_new_branches_under_the_prefix_only(
    provider: LocalSandboxProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roots = tmp_path / "repos"
    bare = make_remote(roots, "proj")
    git("--git-dir", str(bare), "branch", "runyard/taken", "main")
    before = refs(bare)
    sb = await _sandbox(provider, bare, "sbx_prefix")

    # No roots: the repository is read-only to runs.
    await _push(sb, "feat", "runyard/feat")
    readonly = Settings(allow_local_repos=True)
    pushes = await _relay(provider, sb, readonly).forward()
    assert not any(p.forwarded for p in pushes)
    assert "read-only to runs" in describe(pushes)
    assert refs(bare) == before

    # Roots: new branches under the prefix only, never over a branch that was there.
    settings = Settings(allow_local_repos=True, local_repo_roots=str(roots))
    await _push(sb, "runyard/taken")
    there = set(bare.rglob("*"))
    relay = _relay(provider, sb, settings)
    # The worker's umask is private (runyard/datadir.py); what it writes into the
    # operator's repository is not: others who read that repository still can.
    monkeypatch.setattr("runyard.datadir._operator_umask", 0o022)
    worker_umask = os.umask(0o077)
    try:
        by_branch = {p.branch: p for p in await relay.forward()}
    finally:
        os.umask(worker_umask)
    written = set(bare.rglob("*")) - there  # the forwarded objects, dirs and ref
    assert written and all(stat.S_IMODE(p.stat().st_mode) & 0o044 == 0o044 for p in written), [
        f"{p}: {oct(p.stat().st_mode)}" for p in written
    ]
    assert by_branch["runyard/feat"].forwarded
    assert "push to runyard/feat" in by_branch["feat"].message
    assert not by_branch["runyard/taken"].forwarded
    after = refs(bare)
    assert after["refs/heads/runyard/taken"] == before["refs/heads/runyard/taken"]
    assert after["refs/heads/main"] == before["refs/heads/main"] and "refs/heads/feat" not in after
    # The branch the run created moves on, fast-forward.
    await _push(sb, "runyard/feat")
    (again,) = [p for p in await relay.forward() if p.branch == "runyard/feat"]
    assert again.forwarded and refs(bare)["refs/heads/runyard/feat"] == again.sha


async def test_nothing_is_forwarded_once_the_run_has_ended(
    provider: LocalSandboxProvider, tmp_path: Path
) -> None:
    bare = make_remote(tmp_path / "repos", "acme/ended")
    before = refs(bare)
    sb = await _sandbox(provider, bare, "sbx_ended")
    await _push(sb, "late")

    async def ended() -> bool:
        return False

    settings = Settings(git_base_url=(tmp_path / "repos").as_uri())
    relay = Relay(sb, provider.root / sb.id / "mirror.git", settings, active=ended)
    (push,) = await relay.forward()
    assert not push.forwarded and "the run has ended" in push.message
    assert refs(bare) == before


async def test_the_agents_checkout_has_the_usual_modes(
    provider: LocalSandboxProvider, tmp_path: Path
) -> None:
    """The worker's umask is 077 (runyard/datadir.py); the checkout it makes for the agent
    is not private to it: files 644, directories 755, like the agent's own files."""
    bare = make_remote(tmp_path / "repos", "acme/modes")
    worker_umask = os.umask(0o077)
    try:
        sb = await _sandbox(provider, bare, "sbx_modes")
    finally:
        os.umask(worker_umask)
    res = await sb.exec("stat -c '%a %n' . * && touch new && stat -c '%a %n' new", timeout=30)
    assert res.exit_code == 0, res.stdout
    modes = dict(line.split(" ", 1)[::-1] for line in res.stdout.splitlines())
    assert modes["."] == "755" and modes["new"] == "644", modes
    assert all(m in ("644", "755") for m in modes.values()), modes


async def test_a_cancel_during_the_address_check_stops_the_push(
    provider: LocalSandboxProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store is asked right before git pushes, after the upstream's address check
    (DNS, which can take a while): a cancel written during it means no push starts."""
    bare = make_remote(tmp_path / "repos", "acme/late")
    before = refs(bare)
    sb = await _sandbox(provider, bare, "sbx_late")
    await _push(sb, "late")
    ended = False

    async def active() -> bool:
        return not ended

    real = upstream_access

    async def slow_access(upstream: str, settings: Settings) -> tuple[str, dict[str, str]]:
        nonlocal ended
        ended = True  # the cancel is written while the address is checked
        return await real(upstream, settings)

    monkeypatch.setattr(relay_module, "upstream_access", slow_access)
    settings = Settings(git_base_url=(tmp_path / "repos").as_uri())
    relay = Relay(sb, provider.root / sb.id / "mirror.git", settings, active=active)
    (push,) = await relay.forward()
    assert not push.forwarded and "the run has ended" in push.message
    assert refs(bare) == before


async def test_a_runs_pushes_are_capped_in_all_forwarded_or_refused(
    provider: LocalSandboxProvider, tmp_path: Path
) -> None:
    """Every bundle is fetched into the mirror on the worker's disk (forwarded or refused
    after the fetch) and stays there until the sandbox goes: a run's pushes together are
    capped, or a run pushing 256 MiB a command could fill the worker's disk."""
    bare = make_remote(tmp_path / "repos", "acme/bytes")
    sb = await _sandbox(provider, bare, "sbx_bytes")
    settings = Settings(
        git_base_url=(tmp_path / "repos").as_uri(),
        git_push_max_bytes=10_000_000,
        git_run_push_max_bytes=3_000_000,
    )
    relay = _relay(provider, sb, settings)
    messages = []
    for _ in range(3):  # 2 MB of new random data each time, pushed to one branch
        res = await sb.exec(
            "head -c 2000000 /dev/urandom > blob && git add blob && git commit -q -m blob && "
            "git push -q origin HEAD:refs/heads/big",
            timeout=30,
        )
        assert res.exit_code == 0, res
        (push,) = await relay.forward()
        messages.append(push.message)
    assert "forwarded big" in messages[0] and "forwarded big" in messages[1], messages
    assert "not forwarded" in messages[2], messages
    assert "RUNYARD_GIT_RUN_PUSH_MAX_BYTES" in messages[2], messages
