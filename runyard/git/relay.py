"""Forwarding the branches an agent pushed to its sandbox's ``origin`` to the real remote.

Nothing on the host reads the sandbox's repository: inside the sandbox, git writes a
bundle of the pushed branches, which is read out through the ``Sandbox`` protocol with a
byte cap, fetched into Runyard's mirror with ``transfer.fsckObjects``, checked against
the policy (``push_policy``: a branch, not the default one, no deletion, fast-forward
only, within the caps, a local repository's rules) and pushed upstream from the mirror
with Runyard's credentials, each push only while the run is still active (``active``).
Works for any sandbox provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from runyard.datadir import operator_umask
from runyard.git.clone import GitState
from runyard.git.gitcmd import GitError, run_git
from runyard.git.intake import InvalidRepo
from runyard.git.push_policy import is_local, select
from runyard.git.remote import upstream_access
from runyard.sandbox.base import Sandbox, ToolError
from runyard.sandbox.capped import TooLarge, read_capped
from runyard.settings import Settings
from runyard.ssrf import ForbiddenURL

_REF_LINE = re.compile(r"^([0-9a-f]{40}) refs/heads/(\S+)$")
_BUNDLE = ".git/runyard-push.bundle"
_BASE = "runyard-base-bytes"  # the mirror's objects before the run's first push, in bytes


@dataclass(frozen=True)
class Push:
    branch: str
    sha: str
    forwarded: bool
    message: str
    output: dict[str, Any] | None = None


@dataclass
class Relay:
    sandbox: Sandbox
    mirror: Path
    settings: Settings
    known: dict[str, str] = field(default_factory=dict)  # already forwarded: name → sha
    # Asked right before each push upstream: False once the run has ended (or is being
    # cancelled), and nothing more is forwarded.
    active: Callable[[], Awaitable[bool]] | None = None
    # A fork's: the branches the runs it was forked from forwarded; it pushes to its own.
    taken: frozenset[str] = frozenset()

    @property
    def state(self) -> GitState | None:
        return GitState.load(self.mirror)

    async def pushed_refs(self, state: GitState) -> dict[str, str]:
        """The branches of the sandbox's origin, as git inside the sandbox lists them."""
        res = await self.sandbox.exec(
            f"git --git-dir={shlex.quote(state.remote)} for-each-ref "
            "--format='%(objectname) %(refname)' refs/heads/",
            timeout=30,
        )
        refs: dict[str, str] = {}
        for line in res.stdout.splitlines()[:1000]:
            if m := _REF_LINE.match(line.strip()):
                refs[m[2]] = m[1]
        return refs

    async def forward(self) -> list[Push]:
        """Forward every branch whose tip changed since it was last forwarded."""
        state = self.state
        if state is None:
            return []
        refs = await self.pushed_refs(state)
        changed = {
            b: sha
            for b, sha in refs.items()
            if self.known.get(b) != sha
            and not (b == state.default_branch and sha == state.base_sha)
        }
        chosen = select(changed, state, self.known, self.settings)
        results = [Push(r.branch, r.sha, False, r.message) for r in chosen.refused]
        wanted = chosen.wanted
        for branch in [b for b in wanted if b in self.taken and b not in self.known]:
            why = (
                f"refused {branch}: the run this one was forked from pushed it; a fork "
                "pushes to a branch of its own"
            )
            results.append(Push(branch, wanted.pop(branch), False, why))
        if not wanted:
            return results
        if not await self._still_active():
            return results + [self._ended(b, s) for b, s in wanted.items()]
        try:
            fetched = await self._fetch(state, wanted)
        except (GitError, TooLarge, FileNotFoundError, ToolError) as exc:
            return results + [Push(b, s, False, f"not forwarded: {exc}") for b, s in wanted.items()]
        for branch, sha in fetched.items():
            results.append(await self._push(state, branch, sha))
        return results

    async def _still_active(self) -> bool:
        return self.active is None or await self.active()

    @staticmethod
    def _ended(branch: str, sha: str) -> Push:
        return Push(branch, sha, False, f"not forwarded {branch}: the run has ended")

    async def _fetch(self, state: GitState, wanted: dict[str, str]) -> dict[str, str]:
        """Bring the pushed commits into the mirror; the shas as the bundle had them."""
        grown = await asyncio.to_thread(_grown, self.mirror)
        if grown >= self.settings.git_run_push_max_bytes:
            raise TooLarge(
                f"this run's pushes have added {grown} bytes to Runyard's copy of the "
                f"repository, the most allowed ({self.settings.git_run_push_max_bytes}, "
                "RUNYARD_GIT_RUN_PUSH_MAX_BYTES)"
            )
        ws = shlex.quote(state.workspace)
        refs = " ".join(shlex.quote(f"refs/heads/{b}") for b in wanted)
        exclude = f" --not {state.base_sha}" if state.base_sha else ""
        bundle = _BUNDLE  # relative to the workspace, where sandbox commands start
        res = await self.sandbox.exec(
            f"git --git-dir={shlex.quote(state.remote)} bundle create -q "
            f"{shlex.quote(bundle)} {refs}{exclude} 2>&1",
            timeout=self.settings.git_timeout_seconds,
        )
        if res.exit_code != 0 and "empty bundle" not in res.stdout:
            raise GitError(f"could not bundle the pushed commits: {res.stdout.strip()[-500:]}")
        local = self.mirror / "runyard-incoming.bundle"
        try:
            if res.exit_code == 0:
                data = await read_capped(self.sandbox, bundle, self.settings.git_push_max_bytes)
                local.write_bytes(data)
                specs = [f"+refs/heads/{b}:refs/runyard/incoming/{b}" for b in wanted]
                await run_git(
                    "-C",
                    str(self.mirror),
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    "--no-write-fetch-head",
                    str(local),
                    *specs,
                    protocols="file",
                    config={"transfer.fsckObjects": "true", "fetch.fsckObjects": "true"},
                    timeout=self.settings.git_timeout_seconds,
                )
        finally:
            local.unlink(missing_ok=True)
            with contextlib.suppress(Exception):
                await self.sandbox.exec(f"rm -f {ws}/{bundle}", timeout=30)
        out: dict[str, str] = {}
        for branch, sha in wanted.items():
            ref = f"refs/runyard/incoming/{branch}" if res.exit_code == 0 else sha
            got = await run_git(
                "-C",
                str(self.mirror),
                "rev-parse",
                "-q",
                "--verify",
                f"{ref}^{{commit}}",
                check=False,
            )
            if got.code == 0:
                out[branch] = got.stdout.strip()
        return out

    async def _push(self, state: GitState, branch: str, sha: str) -> Push:
        old = self.known.get(branch)
        if old is not None:
            ff = await run_git(
                "-C", str(self.mirror), "merge-base", "--is-ancestor", old, sha, check=False
            )
            if ff.code != 0:
                return Push(
                    branch,
                    sha,
                    False,
                    f"refused non-fast-forward push to {branch}: force pushes are not allowed",
                )
        # Into a local repository, never over a branch that existed before this run
        # forwarded it: the push must find the branch absent, or where the run left it.
        # Its new objects and refs get the operator's umask, not the worker's private
        # one: others who read that repository (a git server, a team) still can.
        local = is_local(state.upstream, self.settings)
        lease = [f"--force-with-lease=refs/heads/{branch}:{old or ''}"] if local else []
        try:
            protos, config = await upstream_access(state.upstream, self.settings)
            # Asked last, right before git starts (the address check above can take a
            # while): a cancel written meanwhile means no push starts.
            if not await self._still_active():
                return self._ended(branch, sha)
            await run_git(
                "-C",
                str(self.mirror),
                "push",
                "--quiet",
                "--no-verify",
                *lease,
                "--",
                state.upstream,
                f"{sha}:refs/heads/{branch}",
                protocols=protos,
                config=config,
                timeout=self.settings.git_timeout_seconds,
                umask=operator_umask() if local else -1,
            )
        except (GitError, InvalidRepo, ForbiddenURL) as exc:
            return Push(branch, sha, False, f"forwarding {branch} upstream failed: {exc}")
        await run_git("-C", str(self.mirror), "update-ref", f"refs/heads/{branch}", sha)
        self.known[branch] = sha
        output = {"type": "branch", "name": branch, "sha": sha, "url": branch_url(state, branch)}
        return Push(branch, sha, True, f"forwarded {branch} ({sha[:12]}) upstream", output)


def _grown(mirror: Path) -> int:
    """Bytes the run's pushes added to the mirror's objects (on the worker's disk, outside
    the sandbox's ``diskMi``): every fetched bundle stays there, forwarded or refused, until
    the sandbox is destroyed. Runyard's own directory: a walk of a few pack files."""
    size = sum(
        (Path(d) / f).stat().st_size for d, _, files in os.walk(mirror / "objects") for f in files
    )
    base = mirror / _BASE
    if not base.exists():
        base.write_text(str(size))
    return max(0, size - int(base.read_text()))


def branch_url(state: GitState, branch: str) -> str:
    up = state.upstream
    if up.startswith("https://"):
        return f"{up.removesuffix('.git')}/tree/{branch}"
    return f"{up}#{branch}"


def log_pushes(pushes: list[Push], *, run_id: str, org_id: str) -> None:
    """One log line a push: forwarded or refused, with the run and the branch."""
    log = structlog.get_logger("runyard.outputs")
    for p in pushes:
        log.info(
            "push.forwarded" if p.forwarded else "push.refused",
            run_id=run_id,
            workflow_id=run_id,
            org_id=org_id,
            branch=p.branch,
            detail=p.message,
        )


def describe(pushes: list[Push]) -> str:
    """The lines appended to the tool result of the command that pushed."""
    return "\n".join(f"runyard: {m}" for m in dict.fromkeys(p.message for p in pushes))
