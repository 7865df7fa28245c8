"""The ``GitProvider`` protocol (pull requests and issues) and its GitHub REST
implementation (``RUNYARD_GITHUB_API_URL``, ``RUNYARD_GITHUB_TOKEN``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from runyard.git.intake import InvalidRepo, parse_repo
from runyard.settings import Settings


class ProviderError(RuntimeError):
    """The provider refused or failed; the message is fit for a tool result."""


@dataclass(frozen=True)
class Created:
    number: int
    url: str


class GitProvider(Protocol):
    async def default_branch(self) -> str: ...

    async def create_pull_request(
        self, *, title: str, body: str, head: str, base: str, draft: bool
    ) -> Created: ...

    async def create_issue(self, *, title: str, body: str, labels: list[str]) -> Created: ...


class GitHubProvider:
    def __init__(
        self,
        api_url: str,
        token: str,
        owner: str,
        repo: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30,
    ) -> None:
        self._base = f"{api_url.rstrip('/')}/repos/{quote(owner, safe='')}/{quote(repo, safe='')}"
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "runyard",
        }
        self._transport = transport
        self._timeout = timeout

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with httpx.AsyncClient(
            transport=self._transport, timeout=self._timeout, follow_redirects=False
        ) as client:
            try:
                resp = await client.request(
                    method, self._base + path, json=body, headers=self._headers
                )
            except httpx.HTTPError as exc:
                raise ProviderError(f"the git provider could not be reached: {exc}") from exc
        if resp.status_code >= 300:
            detail = resp.text[:500]
            try:
                detail = str(resp.json().get("message", detail))[:500]
            except ValueError:
                pass
            raise ProviderError(f"the git provider answered {resp.status_code}: {detail}")
        try:
            return resp.json()
        except ValueError as exc:
            raise ProviderError("the git provider answered with invalid JSON") from exc

    async def default_branch(self) -> str:
        data = await self._call("GET", "")
        return str(data.get("default_branch") or "main")

    async def create_pull_request(
        self, *, title: str, body: str, head: str, base: str, draft: bool
    ) -> Created:
        payload = {"title": title, "body": body, "head": head, "base": base, "draft": draft}
        data = await self._call("POST", "/pulls", payload)
        return Created(int(data["number"]), str(data.get("html_url") or data.get("url")))

    async def create_issue(self, *, title: str, body: str, labels: list[str]) -> Created:
        data = await self._call("POST", "/issues", {"title": title, "body": body, "labels": labels})
        return Created(int(data["number"]), str(data.get("html_url") or data.get("url")))


def provider_for(repo: str | None, settings: Settings) -> GitProvider | None:
    """The provider of the run's repository, or None (the tools then answer an error)."""
    if not repo or not settings.pr_token:
        return None
    try:
        source = parse_repo(repo, settings)
    except InvalidRepo:
        return None
    if not source.trusted or source.owner is None or source.name is None:
        return None  # the token belongs to the operator's git host only
    return GitHubProvider(settings.github_api_url, settings.pr_token, source.owner, source.name)
