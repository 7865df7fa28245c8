"""The hardened clone of a run's repository, and the credential-free ``origin`` the agent
pushes to.

Layout under a local sandbox's root (only ``workspace`` and ``remote`` are visible inside;
both are on the sandbox's disk, ``disk/``, and count against its ``diskMi``):

- ``mirror.git``: Runyard's own bare clone of the real remote (never visible to the agent);
  pushes are fetched into it from a bundle and forwarded upstream from it.
- ``disk/workspace``: a copy of the mirror (``--no-local``: no hardlinks, no shared file),
  whose ``origin`` is ``/runyard/remote/origin.git``.
- ``disk/remote/origin.git``: the bare repository the agent pushes to. Its objects borrow the
  workspace's (alternates), its hooks and config are bound read-only, and its pre-receive
  hook refuses what Runyard would refuse, with a message the agent reads.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from runyard.errors import RepositoryNotFound, RepositoryRefused, SandboxError
from runyard.git.gitcmd import GitError, run_git
from runyard.git.intake import InvalidRepo, RepoSource, parse_repo, protocols
from runyard.git.remote import pinned_config
from runyard.settings import Settings, get_settings
from runyard.ssrf import ForbiddenURL

STATE_FILE = "runyard.json"
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/-]{1,200}(?<![./])$")
_MISSING = (
    "not found",
    "does not exist",
    "does not appear to be a git repository",
    "could not read from remote",
    "repository not found",
)


RepoNotFound = RepositoryNotFound
RepoRefused = RepositoryRefused


def valid_branch(name: str) -> bool:
    return bool(_BRANCH.match(name)) and not name.endswith(".lock")


@dataclass(frozen=True)
class GitState:
    """What the relay and the final patch need, kept beside the mirror (host side only)."""

    upstream: str
    default_branch: str
    base_sha: str | None
    workspace: str  # the workspace's path as the sandbox sees it
    remote: str  # origin.git's path as the sandbox sees it

    @staticmethod
    def load(mirror: Path) -> GitState | None:
        try:
            return GitState(**json.loads((mirror / STATE_FILE).read_text()))
        except FileNotFoundError:
            return None


def mirror_path(settings: Settings, sandbox_id: str) -> Path:
    return settings.sandboxes_dir / sandbox_id / "mirror.git"


_HOOK = """#!/bin/sh
# Runyard forwards pushed branches to the real remote; it refuses these.
zero=0000000000000000000000000000000000000000
status=0
while read old new ref; do
  case "$ref" in
    refs/heads/*) ;;
    *) echo "runyard: refused $ref: only branches (refs/heads/...) are forwarded" >&2
       status=1; continue ;;
  esac
  branch=${ref#refs/heads/}
  if [ "$new" = "$zero" ]; then
    echo "runyard: refused deleting $branch: deleting branches is not allowed" >&2; status=1
  elif [ "$branch" = %(default)s ]; then
    echo "runyard: refused pushing to $branch: it is the repository's default branch." \\
      "Push to a new branch (git push origin HEAD:my-branch) and open a pull request." >&2
    status=1
  elif [ "$old" != "$zero" ] && ! git merge-base --is-ancestor "$old" "$new"; then
    echo "runyard: refused non-fast-forward push to $branch: force pushes are not" \\
      "allowed; push new commits on top, or push to a new branch" >&2
    status=1
  fi
done
exit $status
"""


async def clone_for_sandbox(
    url: str, root: Path, *, isolated: bool, workspace: Path | None = None
) -> None:
    """Clone ``url`` into ``workspace`` (default ``root/workspace``) through
    ``root/mirror.git`` and set up ``remote/origin.git`` beside the workspace.
    ``isolated``: paths as bubblewrap shows them."""
    settings = get_settings()
    if url.startswith(("/", "file://")):  # allowed by the caller (the provision activity)
        path = urlsplit(url).path if url.startswith("file://") else url
        source, config, protos = RepoSource(Path(path).as_uri(), "local", True), {}, "file"
    else:
        try:
            source = parse_repo(url, settings)
            config = await pinned_config(source, settings)
        except InvalidRepo as exc:
            raise RepoRefused(f"repository refused: {exc}") from exc
        except ForbiddenURL as exc:
            raise RepoRefused(f"repository host refused: {exc}") from exc
        protos = protocols(settings)
    mirror = root / "mirror.git"
    workspace = workspace or root / "workspace"
    if workspace.exists():
        await asyncio.to_thread(shutil.rmtree, workspace)
    if mirror.exists():
        await asyncio.to_thread(shutil.rmtree, mirror)
    try:
        await run_git(
            "clone",
            "--bare",
            "--no-local",
            "--quiet",
            "--",
            source.url,
            str(mirror),
            protocols=protos,
            config=config,
            timeout=settings.git_timeout_seconds,
        )
    except GitError as exc:
        if any(m in str(exc).lower() for m in _MISSING):
            raise RepoNotFound(f"git clone of {url} failed: no such repository") from exc
        raise SandboxError(f"git clone of {url} failed: {exc}") from exc
    # The agent's checkout has the usual modes (644, 755), as what it creates itself (the
    # sandbox's umask is 022), not the worker's private 077.
    await run_git(
        "clone",
        "--no-local",
        "--quiet",
        "--",
        mirror.as_uri(),
        str(workspace),
        protocols="file",
        umask=0o022,
    )
    ws_in = "/workspace" if isolated else str(workspace)
    # The agent's origin lives beside the workspace: on the sandbox's disk, within its size.
    origin = workspace.parent / "remote" / "origin.git"
    remote_in = "/runyard/remote/origin.git" if isolated else str(origin)
    state = await _state(source.url, mirror, workspace, ws_in, remote_in)
    for key, value in (
        ("remote.origin.url", remote_in),
        ("user.name", "Runyard Agent"),
        ("user.email", "agent@runyard.invalid"),
    ):
        await run_git("-C", str(workspace), "config", key, value)
    await _sandbox_remote(origin, state)
    (mirror / STATE_FILE).write_text(json.dumps(asdict(state)))


async def _state(upstream: str, mirror: Path, workspace: Path, ws: str, remote: str) -> GitState:
    head = await run_git("-C", str(mirror), "symbolic-ref", "--short", "HEAD", check=False)
    default = head.stdout.strip() or "main"
    sha = await run_git("-C", str(workspace), "rev-parse", "--verify", "-q", "HEAD", check=False)
    return GitState(upstream, default, sha.stdout.strip() or None, ws, remote)


async def _sandbox_remote(origin: Path, state: GitState) -> None:
    await run_git("init", "--bare", "--quiet", "--template=", str(origin), protocols="file")
    for key, value in (
        ("receive.denyDeletes", "true"),
        ("receive.denyNonFastForwards", "true"),
        ("core.logAllRefUpdates", "false"),
    ):
        await run_git("config", "--file", str(origin / "config"), key, value)
    (origin / "objects" / "info").mkdir(parents=True, exist_ok=True)
    (origin / "objects" / "info" / "alternates").write_text(f"{state.workspace}/.git/objects\n")
    if state.base_sha and valid_branch(state.default_branch):
        ref = origin / "refs" / "heads" / state.default_branch
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(state.base_sha + "\n")
    (origin / "HEAD").write_text(f"ref: refs/heads/{state.default_branch}\n")
    hooks = origin / "hooks"
    hooks.mkdir(exist_ok=True)
    hook = hooks / "pre-receive"
    hook.write_text(_HOOK % {"default": shlex.quote(state.default_branch)})
    hook.chmod(0o755)
