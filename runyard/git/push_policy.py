"""Which of the branches an agent pushed to its sandbox's ``origin`` the relay forwards.

Refused, each with the reason the agent reads in its tool result:

- a name git would refuse, and the repository's default branch;
- for a local repository (a path on the server): everything when the operator set no
  ``RUNYARD_LOCAL_REPO_ROOTS`` (the repository is read-only to runs), else every branch
  outside ``RUNYARD_LOCAL_PUSH_PREFIX``; the push itself never updates a branch that
  existed before the run forwarded it (``Relay`` pushes with a lease);
- branches past the caps: ``RUNYARD_GIT_MAX_BRANCHES_PER_PUSH`` in one forward,
  ``RUNYARD_GIT_MAX_BRANCHES_PER_RUN`` distinct branches in the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from runyard.git.clone import GitState, valid_branch
from runyard.git.intake import under_roots
from runyard.settings import Settings


def is_local(upstream: str, settings: Settings) -> bool:
    """Whether ``upstream`` is a local repository a client named (a path on the server),
    not one of the operator's own ``RUNYARD_GIT_BASE_URL`` (which may be a file:// URL)."""
    base = settings.git_base_url.rstrip("/") + "/"
    return upstream.startswith(("/", "file://")) and not upstream.startswith(base)


@dataclass(frozen=True)
class Refusal:
    branch: str
    sha: str
    message: str


@dataclass(frozen=True)
class Selection:
    wanted: dict[str, str]  # branch → sha, to forward
    refused: list[Refusal]


def local_refusal(branch: str, state: GitState, settings: Settings) -> str | None:
    """Why ``branch`` may not be forwarded into the run's local repository, if it may not."""
    if not is_local(state.upstream, settings):
        return None
    path = Path(urlsplit(state.upstream).path)
    if not settings.local_roots or not under_roots(path.resolve(), settings):
        return (
            f"refused forwarding {branch}: this run's repository is a local path on the "
            "server, read-only to runs; your work is kept as changes.patch when the run ends"
        )
    prefix = settings.local_push_prefix
    if not branch.startswith(prefix):
        return (
            f"refused forwarding {branch}: into this local repository only new branches "
            f"under {prefix} are forwarded; push to {prefix}{branch}"
        )
    return None


def select(
    changed: dict[str, str], state: GitState, known: dict[str, str], settings: Settings
) -> Selection:
    """Split the changed branches (name → sha) into the ones to forward and the refused."""
    wanted: dict[str, str] = {}
    refused: list[Refusal] = []
    over: list[tuple[str, str]] = []
    per_push = settings.git_max_branches_per_push
    per_run = settings.git_max_branches_per_run
    forwarded = set(known)
    for branch, sha in sorted(changed.items()):
        if not valid_branch(branch):
            refused.append(Refusal(branch, sha, f"refused {branch}: not a valid name"))
        elif branch == state.default_branch:
            refused.append(
                Refusal(
                    branch,
                    sha,
                    f"refused pushing to {branch}: it is the repository's default branch; "
                    "push to a new branch and open a pull request",
                )
            )
        elif (why := local_refusal(branch, state, settings)) is not None:
            refused.append(Refusal(branch, sha, why))
        elif len(wanted) >= per_push or (branch not in forwarded and len(forwarded) >= per_run):
            over.append((branch, sha))
        else:
            wanted[branch] = sha
            forwarded.add(branch)
    if over:
        names = ", ".join(b for b, _ in over[:5]) + (
            f" and {len(over) - 5} more" if len(over) > 5 else ""
        )
        message = (
            f"refused forwarding {names}: a run forwards at most {per_run} branches, "
            f"at most {per_push} per push; push fewer branches (pushing a branch already "
            "forwarded again updates it)"
        )
        refused += [Refusal(b, s, message) for b, s in over]
    return Selection(wanted, refused)
