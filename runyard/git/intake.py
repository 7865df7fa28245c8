"""What a run's ``repo`` may be, where it is cloned from, and which hosts it may reach.

- ``owner/name``: a repository on the operator's ``RUNYARD_GIT_BASE_URL`` (trusted).
- ``https://``, ``ssh://`` and ``user@host:path`` URLs from a client: their host must
  pass the callback address policy (``runyard.ssrf``), checked by the API at
  create and again by the worker right before it clones.
- a local path or ``file://`` URL: only with ``RUNYARD_ALLOW_LOCAL_REPOS``, and only
  under ``RUNYARD_LOCAL_REPO_ROOTS`` when the operator sets it (``runyard.git.push_policy``
  says what a run may push into one).
Only https, ssh and (for local repositories) file transports are used; plain http only
when the operator's own base URL is http.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from temporalio.exceptions import ApplicationError

from runyard.settings import Settings
from runyard.ssrf import Resolver, check_url, system_resolver

_SLUG = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_SCP = re.compile(
    r"^(?P<user>[A-Za-z0-9_.-]+)@(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*):(?P<path>[^\s]+)$"
)
_HOST = re.compile(r"^[A-Za-z0-9:\[][A-Za-z0-9.:\[\]-]*$")


class InvalidRepo(ValueError):
    """The repo string is not acceptable (400 VALIDATION_FAILED)."""


@dataclass(frozen=True)
class RepoSource:
    url: str  # what git clones and pushes to (never with credentials)
    kind: str  # "slug" | "url" | "local"
    trusted: bool  # the operator's base URL: no address check, the git token applies
    host: str | None = None  # for the address check (client URLs)
    port: int | None = None
    owner: str | None = None  # owner/name, when the host is GitHub-shaped
    name: str | None = None

    @property
    def web_url(self) -> str | None:
        """A browsable https URL of the repository, when there is one."""
        if self.url.startswith(("https://", "http://")):
            return self.url.removesuffix(".git")
        return None


def _owner_name(path: str) -> tuple[str | None, str | None]:
    parts = [p for p in path.strip("/").removesuffix(".git").split("/") if p]
    if len(parts) == 2 and all(_SLUG.match(f"{p}/x") for p in parts):
        return parts[0], parts[1]
    return None, None


def protocols(settings: Settings) -> str:
    """``GIT_ALLOW_PROTOCOL`` for the worker's git commands."""
    allowed = ["https", "ssh"]
    base = settings.git_base_url
    if settings.allow_local_repos or base.startswith("file://"):
        allowed.append("file")
    if base.startswith("http://"):
        allowed.append("http")
    return ":".join(allowed)


def _forms(settings: Settings) -> str:
    """The forms of ``repo`` this install accepts, for a refusal's message."""
    local = ", or an absolute local path or file:// URL" if settings.allow_local_repos else ""
    return f"repo must be an owner/name slug, an https:// or ssh:// URL, git@host:path{local}"


def _relative(repo: str) -> bool:
    return repo in (".", "..", "~") or repo.startswith(("./", "../", "~/"))


def under_roots(path: Path, settings: Settings) -> bool:
    """Whether ``path`` (resolved) is one of the operator's local repository roots or
    under one; always true when no roots are set."""
    roots = settings.local_roots
    return not roots or any(path == r or path.is_relative_to(r) for r in roots)


def _local_refusal(repo: str, settings: Settings) -> str:
    if not settings.allow_local_repos:
        return (
            "local repositories (paths and file:// URLs) are disabled on this server "
            "(RUNYARD_ALLOW_LOCAL_REPOS)"
        )
    return f"a local repository must be an absolute path or file:// URL (got {repo!r})"


def _local(repo: str, settings: Settings) -> RepoSource:
    path = urlsplit(repo).path if repo.startswith("file://") else repo
    if not settings.allow_local_repos or not path.startswith("/"):
        raise InvalidRepo(_local_refusal(repo, settings))
    resolved = Path(path).resolve()
    sandboxes = settings.sandboxes_dir.resolve()
    if resolved == sandboxes or resolved.is_relative_to(sandboxes):
        # Runyard's own workspaces, origins and mirrors: agent-made repositories that the
        # host must never read, and other runs' work (other organizations' included).
        raise InvalidRepo(f"{resolved} is inside Runyard's sandboxes directory")
    if not under_roots(resolved, settings):
        raise InvalidRepo(
            f"{resolved} is not under the directories this server allows local "
            "repositories in (RUNYARD_LOCAL_REPO_ROOTS)"
        )
    return RepoSource(resolved.as_uri(), "local", True)


def parse_repo(repo: str, settings: Settings) -> RepoSource:
    """Classify ``repo``; InvalidRepo when it is not allowed on this install."""
    repo = repo.strip()
    base = settings.git_base_url.rstrip("/")
    if not repo or any(c in repo for c in "\0\n\r\t ") or repo.startswith("-"):
        raise InvalidRepo(_forms(settings))
    if _relative(repo):  # ./x is a path, not the owner "." (the CLI sends absolute paths)
        raise InvalidRepo(_local_refusal(repo, settings))
    if _SLUG.match(repo) and ".." not in repo:
        owner, slug_name = repo.split("/")
        slug_name = slug_name.removesuffix(".git")
        return RepoSource(
            f"{base}/{owner}/{slug_name}.git", "slug", True, owner=owner, name=slug_name
        )
    if repo.startswith(base + "/"):  # the full URL of a repository on the operator's host
        if ".." in repo[len(base) :]:
            raise InvalidRepo("repo must not contain '..'")
        o, n = _owner_name(repo[len(base) :])
        return RepoSource(repo, "url", True, owner=o, name=n)
    if repo.startswith("file://") or repo.startswith("/"):
        return _local(repo, settings)
    if m := _SCP.match(repo):
        host, path = m["host"], m["path"]
        if path.startswith("-") or host.startswith("-"):
            raise InvalidRepo("bad ssh repository address")
        o, n = _owner_name(path)
        return RepoSource(repo, "url", False, host=host.lower(), port=22, owner=o, name=n)
    parts = urlsplit(repo)
    if parts.scheme in ("https", "ssh"):
        if not parts.hostname or not _HOST.match(parts.hostname):
            raise InvalidRepo("the repository URL has no valid host")
        if parts.password or (parts.username and parts.scheme == "https"):
            raise InvalidRepo("credentials in the repository URL are not allowed")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 22)
        except ValueError as exc:
            raise InvalidRepo(f"bad port: {exc}") from exc
        o, n = _owner_name(parts.path)
        host = parts.hostname.lower().rstrip(".")
        return RepoSource(repo, "url", False, host=host, port=port, owner=o, name=n)
    if parts.scheme == "http":
        raise InvalidRepo("plain http repositories are not allowed: use https or ssh")
    raise InvalidRepo(_forms(settings))


async def check_address(
    source: RepoSource, settings: Settings, resolver: Resolver = system_resolver
) -> list[str]:
    """The addresses a client's repository host may be reached at, or ForbiddenURL.

    The operator's own base URL and (allowed) local repositories are not checked."""
    if source.trusted or source.host is None:
        return []
    host = f"[{source.host}]" if ":" in source.host else source.host
    return await check_url(
        f"https://{host}:{source.port}/",
        allow_private=settings.allow_private_callbacks,
        resolver=resolver,
    )


def clone_url(repo: str, settings: Settings) -> str:
    """The worker's own check of a stored ``repo`` (the API checked it at create too)."""
    try:
        return parse_repo(repo, settings).url
    except InvalidRepo as exc:
        raise ApplicationError(str(exc), type="VALIDATION_FAILED", non_retryable=True) from exc
