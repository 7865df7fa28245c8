"""Where a run's ``repo`` is cloned from, and whether it exists."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

_SLUG = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_URL = re.compile(r"^(https?|file|ssh|git)://|^[\w.-]+@[\w.-]+:")


def repo_url(repo: str, git_base_url: str) -> str:
    """A clone URL for a local path, a URL, or an ``owner/name`` slug on the git host."""
    repo = repo.strip()
    if _URL.match(repo):
        return repo
    if os.path.isabs(repo):  # relative paths would depend on the server's working directory
        return str(Path(repo).resolve())
    if _SLUG.match(repo):
        return f"{git_base_url.rstrip('/')}/{repo.removesuffix('.git')}.git"
    raise ValueError("repo must be an owner/name slug, a git URL or an absolute path")


async def repo_exists(url: str, *, timeout: float = 20.0) -> bool:
    """True when ``git ls-remote`` can read ``url`` (without prompting for credentials)."""
    if url.startswith("/") and not await asyncio.to_thread(Path(url).exists):
        return False
    proc = await asyncio.create_subprocess_exec(
        "git",
        "ls-remote",
        "--heads",
        "--",
        url,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "/bin/false",
            # ssh:// and user@host: URLs: never wait on a host-key or password prompt.
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=10",
        },
    )
    try:
        return await asyncio.wait_for(proc.wait(), timeout) == 0
    except TimeoutError:
        proc.kill()
        return False
