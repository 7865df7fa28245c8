"""``changes.patch``: what a run leaves in its workspace that it did not push.

Inside the sandbox, git snapshots the working tree (untracked files included, ignored
ones not) into a tree object with a scratch index, and writes ``git diff --binary`` from
the commit it cloned to that tree. The host only compares tree ids and reads the patch
with a byte cap; the patch applies with ``git apply`` on the base commit.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from runyard.git.clone import GitState
from runyard.git.gitcmd import run_git
from runyard.sandbox.base import Sandbox
from runyard.sandbox.capped import read_capped

_TREE = re.compile(r"^[0-9a-f]{40}$")
_PATCH = ".git/runyard-changes.patch"
_INDEX = ".git/runyard-index"


@dataclass(frozen=True)
class Patch:
    data: bytes
    files: int
    insertions: int
    deletions: int


def patch_stats(data: bytes) -> tuple[int, int, int]:
    """(files, insertions, deletions) of a git diff, binary hunks counted as files only."""
    files = ins = dels = 0
    in_hunk = False
    for line in data.split(b"\n"):
        if line.startswith(b"diff --git "):
            files += 1
            in_hunk = False
        elif line.startswith(b"@@"):
            in_hunk = True
        elif in_hunk and line.startswith(b"+"):
            ins += 1
        elif in_hunk and line.startswith(b"-"):
            dels += 1
        elif in_hunk and not line.startswith((b" ", b"\\")) and line:
            in_hunk = False
    return files, ins, dels


async def _tree_of(mirror: Path, sha: str) -> str | None:
    res = await run_git(
        "-C", str(mirror), "rev-parse", "-q", "--verify", f"{sha}^{{tree}}", check=False
    )
    return res.stdout.strip() if res.code == 0 else None


async def unpushed_changes(
    sandbox: Sandbox, mirror: Path, state: GitState, pushed: list[str], max_bytes: int
) -> Patch | None:
    """The patch of the workspace against the base commit, unless the workspace is the
    base or matches a branch that was forwarded; None then."""
    if state.base_sha is None:
        return None
    ws = shlex.quote(state.workspace)
    git = "git -c core.hooksPath=/dev/null -c core.fsmonitor=false"
    res = await sandbox.exec(
        f"cd {ws} && export GIT_INDEX_FILE={_INDEX} && rm -f {_INDEX} {_PATCH} && "
        f"{{ cp .git/index {_INDEX} 2>/dev/null || true; }} && "
        f"{git} add -A -- . ':!{_INDEX}' ':!{_PATCH}' >/dev/null 2>&1 && {git} write-tree",
        timeout=120,
    )
    tree = res.stdout.strip()
    if res.exit_code != 0 or not _TREE.match(tree):
        raise RuntimeError(f"could not snapshot the workspace: {res.stderr.strip()[-300:]}")
    done = {await _tree_of(mirror, sha) for sha in [state.base_sha, *pushed]}
    if tree in done:
        await sandbox.exec(f"rm -f {ws}/{_INDEX}", timeout=30)
        return None
    res = await sandbox.exec(
        f"cd {ws} && {git} diff --binary --no-color --no-ext-diff --no-textconv --no-renames "
        f"--src-prefix=a/ --dst-prefix=b/ {state.base_sha} {tree} > {_PATCH}; "
        f"s=$?; rm -f {_INDEX}; exit $s",
        timeout=120,
    )
    try:
        if res.exit_code != 0:
            raise RuntimeError(f"git diff failed in the sandbox: {res.stderr.strip()[-300:]}")
        data = await read_capped(sandbox, _PATCH, max_bytes)
    finally:
        with contextlib.suppress(Exception):
            await sandbox.exec(f"rm -f {ws}/{_PATCH}", timeout=30)
    if not data:
        return None
    return Patch(data, *patch_stats(data))
