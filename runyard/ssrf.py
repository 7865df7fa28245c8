"""Which addresses a callback or webhook may reach.

A URL must be http(s). Its host is resolved and every address checked: loopback,
private, unique-local, CGNAT, multicast, reserved and unspecified addresses are refused
unless ``RUNYARD_ALLOW_PRIVATE_CALLBACKS`` allows loopback and private ones (local
development); link-local and cloud metadata addresses are refused always. The sender
connects to the address it checked (no second lookup), so DNS rebinding cannot slip a
private address in between, and it never follows redirects.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

Resolver = Callable[[str, int], Awaitable[list[str]]]
IP = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})
_ALWAYS_REFUSED = [
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, incl. 169.254.169.254 metadata
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
]


class ForbiddenURL(ValueError):
    """The URL points somewhere callbacks may not go (422 CALLBACK_URL_FORBIDDEN)."""


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _unwrap(ip: IP) -> IP:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
    return ip


def address_allowed(ip: IP, *, allow_private: bool) -> bool:
    ip = _unwrap(ip)
    if any(ip in net for net in _ALWAYS_REFUSED) or ip.is_link_local:
        return False
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return False
    if ip.is_loopback or ip.is_private or ip in ipaddress.ip_network("100.64.0.0/10"):
        return allow_private
    return ip.is_global


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute http(s) URL, or ForbiddenURL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ForbiddenURL("only http and https URLs are allowed")
    if not parts.hostname:
        raise ForbiddenURL("the URL has no host")
    if parts.username or parts.password:
        raise ForbiddenURL("credentials in the URL are not allowed")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ForbiddenURL(f"bad port: {exc}") from exc
    return parts.scheme, parts.hostname.lower().rstrip("."), port


async def check_url(
    url: str, *, allow_private: bool, resolver: Resolver = system_resolver
) -> list[str]:
    """The addresses ``url`` may be reached at (all checked), or ForbiddenURL."""
    _, host, port = split_url(url)
    if host in _METADATA_HOSTS or host.endswith(".internal"):
        raise ForbiddenURL(f"{host} is a metadata or internal host")
    try:
        literal: IP | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = await resolver(host, port)
        except OSError as exc:
            raise ForbiddenURL(f"{host} does not resolve ({exc})") from exc
        if not addresses:
            raise ForbiddenURL(f"{host} does not resolve")
    for addr in addresses:
        if not address_allowed(
            ipaddress.ip_address(addr.split("%")[0]), allow_private=allow_private
        ):
            raise ForbiddenURL(f"{host} resolves to {addr}, which callbacks may not reach")
    return addresses
