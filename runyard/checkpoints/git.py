"""Checkpoints inside the sandbox, with git: take one at a turn boundary, restore one in
a fork's fresh clone.

Taking one: a scratch index (first a copy of the real one, then kept from boundary to
boundary, so unchanged files cost a ``stat``),
``git add -A`` (untracked files included, git-ignored ones not), ``write-tree``. When the
tree differs from the previous checkpoint's (or the base commit's), ``commit-tree`` makes
a commit whose parent is the base commit, kept as ``refs/runyard/ckpt/<turn>``, and one
command writes the diffs and a bundle of that commit (``^base``: only what the turn's
worktree adds to the commit the run cloned). The host reads the three files with a byte
cap. The agent's own index, HEAD and branches are never touched.

Restoring one: in the fork's clone, HEAD goes to the source's base commit, the bundle is
unbundled, and ``read-tree -u --reset`` makes the worktree the checkpoint's tree; the index
is then reset to HEAD, so the work shows as uncommitted changes, as in the source. Every
step can run again (a retried provisioning), with the same result.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from runyard.git.patch import patch_stats
from runyard.sandbox.base import Sandbox, ToolError

GIT = "git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c gc.auto=0"
_DIR = ".git/runyard-ckpt"
_SHA = re.compile(r"^[0-9a-f]{40}$")
_IDENTITY = (
    "GIT_AUTHOR_NAME=Runyard GIT_AUTHOR_EMAIL=checkpoints@runyard.invalid "
    "GIT_COMMITTER_NAME=Runyard GIT_COMMITTER_EMAIL=checkpoints@runyard.invalid"
)
LAST_REF = "refs/runyard/ckpt-last"
# The tree of the last checkpoint (or the restored one), beside LAST_REF: read, not asked.
_LAST_TREE = ".git/runyard-ckpt-last-tree"
_PACK = "-c pack.window=0 -c pack.threads=1 -c pack.compression=1"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def ckpt_ref(turn: int) -> str:
    return f"refs/runyard/ckpt/{turn}"


@dataclass(frozen=True)
class Snapshot:
    """What one turn boundary found. ``changed`` False: nothing else is set."""

    changed: bool
    tree: str | None = None
    commit: str | None = None
    previous_diff: bytes = b""
    base_diff: bytes = b""
    diff_truncated: bool = False
    bundle: bytes | None = None  # None: larger than the bound, not kept
    bundle_size: int = 0

    @property
    def stats(self) -> tuple[int, int, int]:
        """(files, insertions, deletions) against the previous checkpoint."""
        return patch_stats(self.previous_diff)


def snapshot_script(turn: int, base: str | None) -> str:
    """The one command that snapshots the worktree. It prints ``unchanged <tree>`` or
    ``changed <tree> <commit>``. Every process counts (a few ms each): the previous tree
    is read from a file, not asked of git, and the two refs move in one ``update-ref``."""
    b = shlex.quote(base) if base else None
    diff = f"{GIT} diff --no-color --no-ext-diff --no-textconv --no-renames"
    fallback = f"$({GIT} rev-parse -q --verify {b}^{{tree}} || echo $empty)" if b else "$empty"
    taken = f"$d/turn-{turn}"  # "prev tree commit" of this turn, once its commit is made
    return (
        "set -e\n"
        f"d={_DIR}; empty={EMPTY_TREE}\n"
        "[ -d $d ] || mkdir $d\n"
        # A retried attempt whose first one made the commit: the same checkpoint again.
        f"if [ -f {taken} ]; then read -r prev tree commit < {taken}; else\n"
        # The scratch index is kept from boundary to boundary: unchanged files cost a stat.
        "[ -f $d/index ] || cp .git/index $d/index 2>/dev/null || true\n"
        f"GIT_INDEX_FILE=$d/index {GIT} add -A -- . >/dev/null\n"
        f"tree=$(GIT_INDEX_FILE=$d/index {GIT} write-tree)\n"
        f"prev=; [ -f {_LAST_TREE} ] && read -r prev < {_LAST_TREE} || true\n"
        f'[ -n "$prev" ] || prev={fallback}\n'
        'if [ "$tree" = "$prev" ]; then echo "unchanged $tree"; exit 0; fi\n'
        f"commit=$({_IDENTITY} {GIT} commit-tree $tree {'-p ' + b if b else ''} "
        f"-m 'runyard checkpoint, turn {turn}')\n"
        f'echo "$prev $tree $commit" > {taken}\n'
        f"printf 'update {ckpt_ref(turn)} %s\\nupdate {LAST_REF} %s\\n' $commit $commit"
        f" | {GIT} update-ref --stdin\n"
        f"echo $tree > {_LAST_TREE}\n"
        "fi\n"
        f"{diff} $prev $tree > $d/previous.diff\n"
        f"{diff} {b or '$empty'} $tree > $d/base.diff\n"
        # A few new blobs: no delta search, no threads, light compression.
        f"{GIT} {_PACK} bundle create -q $d/ckpt.bundle {ckpt_ref(turn)}{' ^' + b if b else ''}\n"
        'echo "changed $tree $commit"\n'
    )


async def take_snapshot(
    sandbox: Sandbox,
    turn: int,
    base: str | None,
    *,
    max_bundle: int,
    max_diff: int,
    workspace: str = "/workspace",
    timeout: float = 120,
) -> Snapshot:
    """Snapshot the worktree at the end of ``turn``; raises ``RuntimeError`` when git
    cannot (a broken repository: the run goes on without this checkpoint)."""
    cd = f"cd {shlex.quote(workspace)}\n"
    res = await sandbox.exec(cd + snapshot_script(turn, base), timeout=timeout)
    words = res.stdout.strip().split()
    if res.exit_code != 0 or not words or words[0] not in ("changed", "unchanged"):
        raise RuntimeError(f"could not snapshot the workspace: {res.stderr.strip()[-300:]}")
    if words[0] == "unchanged":
        return Snapshot(changed=False, tree=words[1] if len(words) > 1 else None)
    if len(words) != 3 or not (_SHA.match(words[1]) and _SHA.match(words[2])):
        raise RuntimeError(f"unexpected snapshot answer {res.stdout.strip()[:200]!r}")
    _, tree, commit = words
    # The files stay in .git until the next boundary's snapshot replaces them: one round
    # trip fewer per turn; they are never part of the worktree.
    try:
        previous = await sandbox.read_file(f"{_DIR}/previous.diff", max_bytes=max_diff)
        base_diff = await sandbox.read_file(f"{_DIR}/base.diff", max_bytes=max_diff)
        content = await sandbox.read_file(f"{_DIR}/ckpt.bundle", max_bytes=max_bundle)
    except ToolError as exc:
        raise RuntimeError(f"could not read the checkpoint: {exc}") from exc
    bundle = None if content.truncated else content.data
    bundle_size = content.size
    return Snapshot(
        changed=True,
        tree=tree,
        commit=commit,
        previous_diff=previous.data,
        base_diff=base_diff.data,
        diff_truncated=previous.truncated or base_diff.truncated,
        bundle=bundle,
        bundle_size=bundle_size,
    )


_RESTORE_BUNDLE = ".git/runyard-restore.bundle"


def restore_script(base: str | None, with_bundle: bool) -> str:
    """Make the worktree the checkpoint's tree (or the base commit's, without a bundle)
    and HEAD the base commit. Prints ``restored <tree>``."""
    q = shlex.quote
    lines = ["set -e"]
    if base:
        lines += [
            f"{GIT} cat-file -e {q(base)}^{{commit}}",
            f"{GIT} reset -q --hard {q(base)}",
        ]
    lines.append(f"{GIT} clean -fdq")
    if with_bundle:
        lines += [
            f"sha=$({GIT} bundle unbundle {_RESTORE_BUNDLE} | awk 'NR==1 {{print $1}}')",
            f"{GIT} update-ref {LAST_REF} $sha",
            f"{GIT} rev-parse $sha^{{tree}} > {_LAST_TREE}",
            f"{GIT} read-tree -u --reset $sha^{{tree}}",
            f"{GIT} reset -q",
            f"rm -f {_RESTORE_BUNDLE}",
            f'echo "restored $({GIT} rev-parse $sha^{{tree}})"',
        ]
    else:
        lines += [
            f"{GIT} update-ref -d {LAST_REF} 2>/dev/null || true",
            f"rm -f {_LAST_TREE}",
            "echo restored base",
        ]
    return "\n".join(lines) + "\n"


async def restore(
    sandbox: Sandbox,
    base: str | None,
    bundle: bytes | None,
    *,
    workspace: str = "/workspace",
    timeout: float = 300,
) -> str:
    """Restore the checkpoint in ``bundle`` (None: the base commit's tree); the restored
    tree's id (or ``base``). Raises ``RuntimeError`` when git cannot."""
    if bundle is not None:
        await sandbox.write_file(_RESTORE_BUNDLE, bundle)
    script = f"cd {shlex.quote(workspace)}\n" + restore_script(base, bundle is not None)
    res = await sandbox.exec(script, timeout=timeout)
    words = res.stdout.strip().split()
    if res.exit_code != 0 or len(words) != 2 or words[0] != "restored":
        raise RuntimeError(f"could not restore the checkpoint: {res.stderr.strip()[-300:]}")
    return words[1]
