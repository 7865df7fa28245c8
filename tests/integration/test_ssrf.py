"""SSRF: forbidden callback and webhook addresses, at registration and at delivery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from notifications.sender import Sender
from runyard.ssrf import ForbiddenURL, check_url
from tests.conftest import in_process_api
from tests.fakes.receiver import Receiver

FORBIDDEN = [
    "http://127.0.0.1/hook",
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/hook",
    "http://localhost:8080/hook",
    "http://metadata.google.internal/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://0.0.0.0/x",
    "http://192.168.1.1/x",
    "http://[fd00::1]/x",
    "ftp://example.com/x",
    "http://user:pw@example.com/x",
]


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_api(tmp_path, "ssrf", allow_private_callbacks=False) as c:
        yield c


@pytest.fixture
async def relaxed(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_api(tmp_path, "ssrf", allow_private_callbacks=True) as c:
        yield c


@pytest.mark.parametrize("url", FORBIDDEN)
async def test_registration_refuses_forbidden_addresses(
    strict: httpx.AsyncClient, url: str
) -> None:
    for resp in (
        await strict.post("/v1/webhooks", json={"url": url}),
        await strict.post(
            "/v1/runs", json={"prompt": "x", "model": "scripted", "callbackUrl": url}
        ),
    ):
        assert resp.status_code in (400, 422), resp.text
        if resp.status_code == 422:
            assert resp.json()["type"] == "CALLBACK_URL_FORBIDDEN"
    assert (await strict.post("/v1/webhooks", json={"url": url})).status_code == 422


async def test_private_setting_allows_loopback_never_metadata(relaxed: httpx.AsyncClient) -> None:
    ok = await relaxed.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"})
    assert ok.status_code == 201
    for url in (
        "http://169.254.169.254/x",
        "http://metadata.google.internal/x",
        "http://[fe80::1]/x",
    ):
        resp = await relaxed.post("/v1/webhooks", json={"url": url})
        assert resp.status_code == 422 and resp.json()["type"] == "CALLBACK_URL_FORBIDDEN", url


async def test_dns_rebinding_is_caught_at_delivery() -> None:
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    assert await check_url("http://hooks.example/x", allow_private=False, resolver=rebinding)
    sender = Sender(allow_private=False, resolver=rebinding)
    attempt = await sender.post("http://hooks.example/x", {"a": 1}, message_id="m", secrets=None)
    assert (
        attempt.forbidden and attempt.status_code is None and "127.0.0.1" in (attempt.error or "")
    )


async def test_redirects_are_not_followed() -> None:
    receiver = Receiver()
    receiver.start()
    try:
        receiver.answer("first", (302, {"Location": receiver.url("second")}))
        attempt = await Sender(allow_private=True).post(
            receiver.url("first"), {}, message_id="m", secrets=None
        )
        assert attempt.status_code == 302 and not attempt.ok
        assert receiver.at("second") == []
    finally:
        receiver.stop()


async def test_unresolvable_host_is_refused() -> None:
    async def nothing(host: str, port: int) -> list[str]:
        raise OSError("no such host")

    with pytest.raises(ForbiddenURL, match="does not resolve"):
        await check_url("http://nowhere.invalid/x", allow_private=True, resolver=nothing)
