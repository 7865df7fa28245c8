"""The git side of checkpoints (``runyard.checkpoints.git``) on a real repository, with a
sandbox that is a plain directory: what a snapshot captures, when it is taken, and that a
restore gives exactly the checkpoint's tree, again and again."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from runyard.checkpoints.git import Snapshot, restore, take_snapshot
from runyard.git.clone import STATE_FILE
from runyard.git.relay import Relay
from runyard.sandbox.base import ExecResult, FileContent, OutputCallback
from runyard.settings import Settings


class DirSandbox:
    """The ``Sandbox`` protocol over a directory (only what checkpoints use)."""

    id = "sbx_dir"

    def __init__(self, root: Path) -> None:
        self.root = root

    async def exec(
        self, command: str, *, timeout: float, on_output: OutputCallback | None = None
    ) -> ExecResult:
        done = subprocess.run(
            ["bash", "-c", command], cwd=self.root, capture_output=True, text=True, timeout=timeout
        )
        return ExecResult(done.returncode, done.stdout, done.stderr)

    async def read_file(self, path: str, *, max_bytes: int) -> FileContent:
        data = (self.root / path).read_bytes()
        return FileContent(data[:max_bytes], len(data))

    async def write_file(self, path: str, data: bytes) -> None:
        (self.root / path).write_bytes(data)

    async def edit_file(self, path: str, old: str, new: str) -> None:
        raise NotImplementedError

    async def list_files(self, path: str, *, max_entries: int) -> list[str]:
        raise NotImplementedError


def sh(command: str, cwd: Path) -> str:
    env = "git -c user.name=t -c user.email=t@t"
    done = subprocess.run(
        command.replace("git ", env + " "),
        shell=True,
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    ws = tmp_path / "ws"
    ws.mkdir()
    sh("git init -q -b main . && printf 'one\\n' > a.txt && printf 'bee\\n' > b.txt", ws)
    sh("printf '*.log\\n' > .gitignore && git add -A && git commit -qm base", ws)
    return ws, sh("git rev-parse HEAD", ws).strip()


async def snap(ws: Path, turn: int, base: str, **kw: int) -> Snapshot:
    limits = {"max_bundle": 1 << 20, "max_diff": 1 << 20} | kw
    return await take_snapshot(DirSandbox(ws), turn, base, workspace=str(ws), **limits)


async def test_shell_edits_are_captured_ignored_files_are_not(repo: tuple[Path, str]) -> None:
    ws, base = repo
    assert not (await snap(ws, 1, base)).changed  # nothing changed since the clone
    sh("sed -i s/one/two/ a.txt && echo x > new.txt && echo noise > debug.log", ws)
    first = await snap(ws, 1, base)
    assert first.changed and first.stats == (2, 2, 1) and first.bundle
    assert b"debug.log" not in first.base_diff and b"+two" in first.base_diff
    again = await snap(ws, 1, base)  # a retried attempt: the same checkpoint
    assert (again.commit, again.stats, again.bundle) == (first.commit, first.stats, first.bundle)
    assert not (await snap(ws, 2, base)).changed  # the same tree as turn 1's
    sh("rm b.txt", ws)
    second = await snap(ws, 3, base)
    assert second.stats == (1, 0, 1) and b"-bee" in second.previous_diff
    assert b"+two" in second.base_diff and b"-bee" in second.base_diff
    refs = sh("git for-each-ref --format='%(refname)' refs/runyard/ckpt", ws).split()
    assert refs == ["refs/runyard/ckpt/1", "refs/runyard/ckpt/3"]
    # The agent's own index and HEAD are untouched.
    assert sh("git status --short", ws).split("\n")[:3] == [" M a.txt", " D b.txt", "?? new.txt"]
    assert sh("git rev-parse HEAD", ws).strip() == base


async def test_a_bundle_over_the_bound_is_not_kept(repo: tuple[Path, str]) -> None:
    ws, base = repo
    sh("head -c 200000 /dev/urandom > blob.bin", ws)
    got = await snap(ws, 1, base, max_bundle=1000)
    assert got.changed and got.bundle is None and got.bundle_size > 1000


async def test_a_restore_gives_exactly_the_tree_again(
    repo: tuple[Path, str], tmp_path: Path
) -> None:
    ws, base = repo
    sh("sed -i s/one/two/ a.txt && mkdir -p d && echo x > d/new.txt && rm b.txt", ws)
    taken = await snap(ws, 1, base)
    fork = tmp_path / "fork"
    sh(f"git clone -q {ws} {fork}", tmp_path)
    sh("echo later > a.txt && git commit -qam later && echo stray > stray.txt", fork)  # moved on
    for _ in range(2):  # a retried provisioning restores again
        tree = await restore(DirSandbox(fork), base, taken.bundle, workspace=str(fork))
        assert tree == taken.tree
        assert sh("git rev-parse HEAD", fork).strip() == base
        assert (fork / "a.txt").read_text() == "two\n" and not (fork / "b.txt").exists()
        assert not (fork / "stray.txt").exists()
        status = sh("git status --short --untracked-files=all", fork).split("\n")
        assert status[:3] == [" M a.txt", " D b.txt", "?? d/new.txt"]
    # The fork's own first checkpoint is measured from the restored tree.
    sh("echo more >> d/new.txt", fork)
    mine = await snap(fork, 1, base)
    assert mine.stats == (1, 1, 0)
    # Restoring the base alone (a fork before any checkpoint).
    assert await restore(DirSandbox(fork), base, None, workspace=str(fork)) == "base"
    assert sh("git status --short", fork) == ""


async def test_a_fork_does_not_push_to_its_sources_branches(tmp_path: Path) -> None:
    """The relay refuses a fork's push to a branch its source forwarded (it would move the
    source's output); the fork's own branches go on as any run's."""
    mirror = tmp_path / "mirror.git"
    mirror.mkdir()
    state = {
        "upstream": "https://git.example/o/r.git",
        "default_branch": "main",
        "base_sha": "a" * 40,
        "workspace": "/workspace",
        "remote": "/runyard/remote/origin.git",
    }
    (mirror / STATE_FILE).write_text(json.dumps(state))

    class Pushed(DirSandbox):
        async def exec(
            self, command: str, *, timeout: float, on_output: OutputCallback | None = None
        ) -> ExecResult:
            return ExecResult(0, f"{'b' * 40} refs/heads/agent/x\n", "")

    relay = Relay(
        Pushed(tmp_path), mirror, Settings(data_dir=tmp_path), taken=frozenset({"agent/x"})
    )
    (push,) = await relay.forward()
    assert not push.forwarded and push.branch == "agent/x"
    assert "forked from pushed it" in push.message
