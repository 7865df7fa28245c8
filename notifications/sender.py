"""One HTTP attempt: pinned to a checked address, no redirects, 15 s, optionally signed."""

from __future__ import annotations

import ipaddress
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from standardwebhooks.webhooks import Webhook as Signer

from runyard.ssrf import ForbiddenURL, Resolver, check_url, system_resolver

TIMEOUT = 15.0
USER_AGENT = "Runyard-Webhooks/1"


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    latency_ms: float
    error: str | None = None
    retry_after: float | None = None
    forbidden: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def sign(secrets: list[str], message_id: str, at: datetime, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,…`` per live secret, space separated."""
    return " ".join(Signer(s).sign(message_id, at, body) for s in secrets)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


class Sender:
    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver = system_resolver,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self.transport = transport

    async def post(
        self, url: str, payload: dict[str, Any], *, message_id: str, secrets: list[str] | None
    ) -> Attempt:
        body = json.dumps(payload, separators=(",", ":"))
        started = time.perf_counter()
        try:
            addresses = await check_url(
                url, allow_private=self.allow_private, resolver=self.resolver
            )
        except ForbiddenURL as exc:
            return Attempt(None, 0.0, f"forbidden: {exc}", forbidden=True)
        parts = urlsplit(url)
        ip = ipaddress.ip_address(addresses[0].split("%")[0])
        host = f"[{ip}]" if ip.version == 6 else str(ip)
        pinned = urlunsplit(
            (
                parts.scheme,
                f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}",
                parts.path or "/",
                parts.query,
                "",
            )
        )
        headers = {
            "Host": parts.netloc.rpartition("@")[2],
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        if secrets is not None:
            now = datetime.now(UTC)
            headers["webhook-id"] = message_id
            headers["webhook-timestamp"] = str(int(now.timestamp()))
            headers["webhook-signature"] = sign(secrets, message_id, now, body)
        extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
        try:
            async with httpx.AsyncClient(
                transport=self.transport, follow_redirects=False, timeout=TIMEOUT
            ) as client:
                resp = await client.post(
                    pinned, content=body.encode(), headers=headers, extensions=extensions
                )
        except httpx.HTTPError as exc:
            latency = (time.perf_counter() - started) * 1000
            return Attempt(None, latency, f"{type(exc).__name__}: {exc}")
        latency = (time.perf_counter() - started) * 1000
        return Attempt(
            resp.status_code, latency, None, _retry_after(resp.headers.get("retry-after"))
        )
