"""Shared by the git tests: real bare remotes, a Runyard stack pointed at them, helpers."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from runyard.db.engine import Database
from tests.conftest import Keys, async_db_url, launch_stack, stack_env
from tests.stack import Stack

CALC = "def mul(a, b):\n    return a * b\n"


def git(*args: str, cwd: Path | None = None) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def make_remote(root: Path, slug: str) -> Path:
    """A bare repository ``root/<slug>.git`` with ``calc.py`` on ``main``."""
    src = root / "_src" / slug
    src.mkdir(parents=True)
    git("init", "-q", "-b", "main", str(src))
    (src / "calc.py").write_text(CALC)
    git("add", "-A", cwd=src)
    git("commit", "-q", "-m", "calc", cwd=src)
    bare = root / f"{slug}.git"
    git("clone", "-q", "--bare", str(src), str(bare))
    return bare


def refs(bare: Path) -> dict[str, str]:
    out = git("--git-dir", str(bare), "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split() for line in out.splitlines())


@dataclass
class GitStack:
    stack: Stack
    api: httpx.AsyncClient
    remotes: Path
    token: str
    secret_key: str


@asynccontextmanager
async def git_stack(
    data: Path,
    temporal: str,
    anthropic_url: str,
    base_url: str,
    remotes: Path,
    token: str | None = None,
    **extra: str,
) -> AsyncIterator[GitStack]:
    token = token or "ghs_" + secrets.token_hex(16)
    key = secrets.token_hex(32)
    env = stack_env(
        data,
        temporal,
        anthropic_url,
        RUNYARD_GIT_BASE_URL=base_url,
        RUNYARD_GIT_TOKEN=token,
        RUNYARD_ALLOW_LOCAL_REPOS="false",
        RUNYARD_ALLOW_PRIVATE_CALLBACKS="false",
        RUNYARD_SECRET_KEY=key,
        **extra,
    )
    stack = launch_stack(data, env)
    db = Database(async_db_url(env))
    api_key = await Keys(db).make("org-" + secrets.token_hex(4))
    await db.dispose()
    try:
        async with httpx.AsyncClient(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        ) as client:
            yield GitStack(stack, client, remotes, token, key)
    finally:
        stack.stop()


async def events(api: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    resp = await api.get(f"/v1/runs/{run_id}/events", headers={"Accept": "application/json"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return list(body["data"] if isinstance(body, dict) else body)


def tool_results(evs: list[dict[str, Any]]) -> list[str]:
    return [str(e["data"]["output"]) for e in evs if e["type"] == "tool.result"]
