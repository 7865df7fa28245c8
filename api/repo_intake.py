"""The create-time check of a run's ``repo``: its form (400), its host (422), and, for the
operator's own git host or a local path only, that it exists (404)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from api.callbacks import allowed_callback
from api.errors import ProblemError
from runyard.git.intake import InvalidRepo, parse_repo
from runyard.git.remote import repo_exists
from runyard.settings import Settings


async def check_repo(repo: str, settings: Settings) -> None:
    try:
        source = parse_repo(repo, settings)
    except InvalidRepo as exc:
        raise ProblemError(
            400,
            "VALIDATION_FAILED",
            f"repo: {exc}",
            extra={"errors": [{"field": "repo", "message": str(exc), "code": "invalid_repo"}]},
        ) from exc
    if not source.trusted:
        # No git call from here: the worker's clone reports a missing repository.
        host = f"[{source.host}]" if source.host and ":" in source.host else source.host
        await allowed_callback(f"https://{host}:{source.port}/", settings, field="repo")
        return
    if not await repo_exists(source, settings):
        path = Path(url2pathname(urlsplit(source.url).path)) if source.kind == "local" else None
        if path is not None and await asyncio.to_thread(_readable_dir, path):
            # A folder that is there and is not a repository (or only a part of one): say
            # so, "not found or not readable" sent the user looking for the wrong thing.
            raise ProblemError(
                404,
                "REPOSITORY_NOT_FOUND",
                f"'{path}' is a directory but not a git repository (name the top folder of "
                "a repository: the one that holds its .git)",
            )
        raise ProblemError(
            404, "REPOSITORY_NOT_FOUND", f"repository '{repo}' was not found or is not readable"
        )


def _readable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.R_OK | os.X_OK)
