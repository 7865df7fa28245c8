"""Talking to the real remote from the worker (and, for existence, from the API): the
credentials for a URL, the pinned addresses of a client's host, ``ls-remote``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

from runyard.git.gitcmd import GitError, auth_header, run_git
from runyard.git.intake import RepoSource, check_address, parse_repo, protocols
from runyard.settings import Settings


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def remote_config(source: RepoSource, settings: Settings, addresses: list[str]) -> dict[str, str]:
    """Env-scoped git config for one call to ``source``: the operator's token, but only for
    the operator's own git host over http(s), and the checked addresses pinned for https."""
    config: dict[str, str] = {}
    base = _origin(settings.git_base_url)
    url = _origin(source.url)
    if settings.git_token and source.trusted and url[0] in ("https", "http") and url == base:
        config["http.extraHeader"] = auth_header(settings.git_token)
    if addresses and url[0] == "https" and source.host and ":" not in source.host:
        # DNS rebinding: connect to the address the policy checked, not a second lookup.
        config["http.curloptResolve"] = f"{source.host}:{source.port}:{addresses[0]}"
    if not source.trusted and source.host:
        # A client's ssh host gets none of the operator's keys, and the checked address.
        pin = f" -o HostName={addresses[0]} -o HostKeyAlias={source.host}" if addresses else ""
        config["core.sshCommand"] = (
            "ssh -F /dev/null -o BatchMode=yes -o ConnectTimeout=15 -o IdentitiesOnly=yes "
            "-o IdentityAgent=none -o IdentityFile=/dev/null" + pin
        )
    return config


async def pinned_config(source: RepoSource, settings: Settings) -> dict[str, str]:
    """Check a client's host again (ForbiddenURL) and return the config for a call."""
    return remote_config(source, settings, await check_address(source, settings))


async def repo_exists(source: RepoSource, settings: Settings, *, timeout: float = 20) -> bool:
    """Whether the operator-trusted or local repository can be read. Never called for a
    client's own URL from the API: the worker's clone reports those."""
    if source.url.startswith("file://"):
        path = Path(urlsplit(source.url).path)
        return await asyncio.to_thread(lambda: (path / "HEAD").exists() or (path / ".git").exists())
    try:
        await run_git(
            "ls-remote",
            "--heads",
            "--",
            source.url,
            protocols=protocols(settings),
            config=remote_config(source, settings, []),
            timeout=timeout,
        )
    except GitError:
        return False
    return True


async def upstream_access(url: str, settings: Settings) -> tuple[str, dict[str, str]]:
    """(GIT_ALLOW_PROTOCOL, env-scoped config) for one call to the run's real remote.
    InvalidRepo or ForbiddenURL when it may not be reached (checked again every call)."""
    if url.startswith(("/", "file://")):  # local: allowed by the provision activity
        return "file", {}
    return protocols(settings), await pinned_config(parse_repo(url, settings), settings)
