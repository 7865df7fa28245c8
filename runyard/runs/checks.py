"""The checks a new run passes that reach outside its own fields: a URL's address, the
repository, the organization's credits. Each raises a typed ``RunyardError``."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from sqlalchemy.orm import Session

from runyard.db.engine import Database
from runyard.errors import AddressForbidden, InsufficientCredits, InvalidInput, RepositoryMissing
from runyard.git.intake import InvalidRepo, parse_repo
from runyard.git.remote import repo_exists
from runyard.settings import Settings
from runyard.ssrf import ForbiddenURL, check_url
from runyard.store.credits import balance


async def check_address(url: str, settings: Settings, field: str = "callbackUrl") -> str:
    """The registration-time SSRF check shared by callbackUrl, watchers, webhooks and a
    repo's host: ``url``, or ``AddressForbidden`` (422)."""
    try:
        await check_url(url, allow_private=settings.allow_private_callbacks)
    except ForbiddenURL as exc:
        raise AddressForbidden(str(exc), field=field, kind="forbidden_address") from exc
    return url


async def check_repo(repo: str, settings: Settings) -> None:
    """A run's ``repo``: its form (400), its host (422), and, for the operator's own git
    host or a local path only, that it exists (404)."""
    try:
        source = parse_repo(repo, settings)
    except InvalidRepo as exc:
        raise InvalidInput(str(exc), field="repo", kind="invalid_repo") from exc
    if not source.trusted:
        # No git call from here: the worker's clone reports a missing repository.
        host = f"[{source.host}]" if source.host and ":" in source.host else source.host
        await check_address(f"https://{host}:{source.port}/", settings, field="repo")
        return
    if not await repo_exists(source, settings):
        path = Path(url2pathname(urlsplit(source.url).path)) if source.kind == "local" else None
        if path is not None and await asyncio.to_thread(_readable_dir, path):
            # A folder that is there and is not a repository (or only a part of one): say
            # so, "not found or not readable" sent the user looking for the wrong thing.
            raise RepositoryMissing(
                f"'{path}' is a directory but not a git repository (name the top folder of "
                "a repository: the one that holds its .git)"
            )
        raise RepositoryMissing(f"repository '{repo}' was not found or is not readable")


def _readable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.R_OK | os.X_OK)


async def check_credits(db: Database, org_id: str) -> None:
    """``InsufficientCredits`` (402) when credits are on and the balance is not above 0."""

    def read(s: Session) -> int | None:
        return balance(s, org_id)

    left = await db.read(read)
    if left is not None and left <= 0:
        raise InsufficientCredits(
            f"the organization has {left} credits left; an operator can add some with "
            "'runyard credits grant'"
        )
