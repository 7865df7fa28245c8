"""The codec server's HTTP contract (api/codec_server.py), on the API app in this process
(no Temporal needed): who may call it, exact-origin CORS, the 4 MiB cap, payloads under an
unknown key left as they are, /codec/encode only when enabled, nothing without keys; the
Temporal UI's login token, checked against its identity provider's key set."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import json_format
from jwt.algorithms import ECAlgorithm
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload

from api.app import create_app
from runyard.devserver import free_port
from runyard.encryption import EncryptionCodec, PayloadKeys, new_key_spec
from runyard.settings import Settings
from tests.conftest import Keys

UI = "http://127.0.0.1:8233"
K1, K2 = new_key_spec("k1"), new_key_spec("k2")


@asynccontextmanager
async def codec_api(
    tmp_path: Path, client_ip: str = "203.0.113.7", **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """The app with payload keys k1 (unless given), a client from ``client_ip`` and keys
    of scope admin and runs:read."""
    settings.setdefault("payload_keys", SecretStr(K1))
    app = create_app(
        Settings(
            data_dir=tmp_path,
            temporal_address=f"127.0.0.1:{free_port()}",
            codec_origins=UI,
            **settings,
        )
    )
    async with app.router.lifespan_context(app):
        keys = Keys(app.state.db)
        made = {
            "admin": await keys.make("org-a", ["admin"]),
            "reader": await keys.make("org-a", ["runs:read"]),
        }
        transport = httpx.ASGITransport(app=app, client=(client_ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client, made


def sealed(spec: str, text: str) -> dict[str, Any]:
    codec = EncryptionCodec(PayloadKeys.parse(spec))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())
    out: dict[str, Any] = json_format.MessageToDict(codec.encrypt(plain))
    return out


def texts(body: dict[str, Any]) -> list[str]:
    return [base64.b64decode(p.get("data", "")).decode(errors="replace") for p in body["payloads"]]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_an_admin_key_decodes_and_unknown_key_ids_stay_encoded(tmp_path: Path) -> None:
    async with codec_api(tmp_path) as (http, keys):
        plain = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()}, "data": ""}
        other = sealed(K2, "under a key this server lacks")
        body = {"payloads": [sealed(K1, "the prompt"), other, plain]}
        got = await http.post(
            "/codec/decode", json=body, headers={**bearer(keys["admin"]), "X-Namespace": "default"}
        )
        assert got.status_code == 200, got.text
        out = got.json()
        assert texts(out)[0] == '"the prompt"'
        assert out["payloads"][1] == other  # left encoded, as sent
        assert out["payloads"][2] == plain
        # The same credential rules as the API: none, a bad one, a key without admin.
        none = await http.post("/codec/decode", json=body)
        assert none.status_code == 401 and none.json()["type"] == "AUTH_UNAUTHORIZED"
        bad = await http.post("/codec/decode", json=body, headers=bearer("ry_live_nope"))
        assert bad.status_code == 401 and bad.json()["type"] == "API_KEY_INVALID"
        reader = await http.post("/codec/decode", json=body, headers=bearer(keys["reader"]))
        assert reader.status_code == 403 and reader.json()["type"] == "FORBIDDEN"
        # Encoding is off unless enabled.
        enc = await http.post("/codec/encode", json=body, headers=bearer(keys["admin"]))
        assert enc.status_code == 404


async def test_cors_answers_the_ui_origin_only(tmp_path: Path) -> None:
    async with codec_api(tmp_path) as (http, keys):
        preflight = {
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
        }
        ok = await http.options("/codec/decode", headers=preflight)
        assert ok.status_code == 204
        assert ok.headers["access-control-allow-origin"] == UI
        assert "x-namespace" in ok.headers["access-control-allow-headers"]
        assert "POST" in ok.headers["access-control-allow-methods"]
        evil = await http.options("/codec/decode", headers={**preflight, "Origin": UI + "0"})
        assert evil.status_code == 403 and "access-control-allow-origin" not in evil.headers
        body = {"payloads": [sealed(K1, "x")]}
        headers = {**bearer(keys["admin"]), "Origin": UI}
        got = await http.post("/codec/decode", json=body, headers=headers)
        assert got.status_code == 200 and got.headers["access-control-allow-origin"] == UI
        # An error the UI gets is readable by it too.
        denied = await http.post("/codec/decode", json=body, headers={"Origin": UI})
        assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == UI
        other = await http.post(
            "/codec/decode", json=body, headers={**headers, "Origin": "https://evil.example"}
        )
        assert other.status_code == 403 and other.json()["type"] == "FORBIDDEN"
        assert other.json()["requestId"] == other.headers["x-request-id"]


async def test_bodies_are_capped_and_checked(tmp_path: Path) -> None:
    async with codec_api(tmp_path) as (http, keys):
        admin = bearer(keys["admin"])
        big = {"payloads": [{"metadata": {}, "data": "A" * (4 * 1024 * 1024)}]}
        got = await http.post("/codec/decode", json=big, headers=admin)
        assert got.status_code == 413, got.text
        assert got.headers["content-type"] == "application/problem+json"
        assert got.json()["type"] == "PAYLOAD_TOO_LARGE"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
            yield b'{"payloads": ['
            for _ in range(5):
                yield b'{"data": "' + b"A" * (1024 * 1024) + b'"},'
            yield b"{}]}"

        streamed = await http.post(
            "/codec/decode",
            content=chunks(),
            headers={**admin, "Content-Type": "application/json"},
        )
        assert streamed.status_code == 413
        bodies: list[Any] = [{"payload": []}, {"payloads": [{"data": "!!not base64"}]}, [1]]
        deep = b'{"payloads": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        nested = await http.post(
            "/codec/decode", content=deep, headers={**admin, "Content-Type": "application/json"}
        )
        assert nested.status_code == 400, nested.text
        for bad in bodies:
            got = await http.post("/codec/decode", json=bad, headers=admin)
            assert got.status_code == 400 and got.json()["type"] == "VALIDATION_FAILED", got.text
        text = await http.post(
            "/codec/decode", content=b"{}", headers={**admin, "Content-Type": "text/plain"}
        )
        assert text.status_code == 400


async def test_encode_when_enabled_and_loopback_open(tmp_path: Path) -> None:
    async with codec_api(
        tmp_path,
        client_ip="127.0.0.1",
        payload_keys=SecretStr(f"{K2},{K1}"),
        codec_encode=True,
        codec_loopback_open=True,
    ) as (http, _):
        plain = json_format.MessageToDict(
            Payload(metadata={"encoding": b"json/plain"}, data=b'"typed in the UI"')
        )
        enc = await http.post("/codec/encode", json={"payloads": [plain]})
        assert enc.status_code == 200, enc.text
        [sealed_now] = enc.json()["payloads"]
        assert base64.b64decode(sealed_now["metadata"]["encryption-key-id"]) == b"k2"
        body = {"payloads": [sealed_now, sealed(K1, "from before the rotation")]}
        dec = await http.post("/codec/decode", json=body)
        assert dec.status_code == 200
        assert texts(dec.json()) == ['"typed in the UI"', '"from before the rotation"']


async def test_loopback_open_is_for_loopback_callers_only(tmp_path: Path) -> None:
    async with codec_api(tmp_path, codec_loopback_open=True) as (http, _):
        got = await http.post("/codec/decode", json={"payloads": []})
        assert got.status_code == 401
    async with codec_api(tmp_path, "::ffff:127.0.0.1", codec_loopback_open=True) as (http, _):
        assert (await http.post("/codec/decode", json={"payloads": []})).status_code == 200


async def test_without_keys_there_is_no_codec_server(tmp_path: Path) -> None:
    async with codec_api(tmp_path, client_ip="127.0.0.1", payload_keys=None) as (http, keys):
        got = await http.post("/codec/decode", json={"payloads": []}, headers=bearer(keys["admin"]))
        assert got.status_code == 404
        doc = (await http.get("/openapi.json")).json()
        assert not [p for p in doc["paths"] if p.startswith("/codec")]


class Jwks:
    """An identity provider's key set, served over HTTP, and tokens signed by its key."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(ECAlgorithm.to_jwk(self.key.public_key()))
        body = json.dumps({"keys": [{**jwk, "kid": "ui-1", "use": "sig", "alg": "ES256"}]})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, signer: Any = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": "https://idp.test", "aud": "temporal-ui", "sub": "ana", "exp": now + 60}
        return jwt.encode(
            {**body, **claims}, signer or self.key, algorithm="ES256", headers={"kid": "ui-1"}
        )


async def test_the_ui_token_is_accepted_when_its_provider_signed_it(tmp_path: Path) -> None:
    idp = Jwks()
    try:
        async with codec_api(
            tmp_path,
            codec_jwks_url=idp.url,
            codec_token_issuer="https://idp.test",
            codec_token_audience="temporal-ui",
        ) as (http, keys):
            body = {"payloads": [sealed(K1, "seen in the UI")]}

            async def call(token: str) -> httpx.Response:
                headers = {**bearer(token), "X-Namespace": "default", "Origin": UI}
                return await http.post("/codec/decode", json=body, headers=headers)

            ok = await call(idp.token())
            assert ok.status_code == 200, ok.text
            assert texts(ok.json()) == ['"seen in the UI"']
            stranger = ec.generate_private_key(ec.SECP256R1())
            for bad in (
                idp.token(aud="another-app"),
                idp.token(iss="https://elsewhere.test"),
                idp.token(exp=int(time.time()) - 120),
                idp.token(signer=stranger),
                jwt.encode({"sub": "ana"}, "shared-secret-shared-secret-32b!", algorithm="HS256"),
            ):
                got = await call(bad)
                assert got.status_code == 401 and got.json()["type"] == "API_KEY_INVALID", bad
            assert (await call(keys["admin"])).status_code == 200  # keys still work
    finally:
        idp.server.shutdown()
