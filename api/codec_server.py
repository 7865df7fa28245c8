"""The codec server: the Temporal UI and CLI read encrypted workflow histories through it.

Served only when ``RUNYARD_PAYLOAD_KEYS`` is set (``runyard/encryption.py``), with
Temporal's codec server protocol (the Temporal UI's ``data-encoder.ts``, the samples'
``encryption/codec_server.py``): ``POST /codec/decode`` takes ``{"payloads": [...]}``
(proto3 JSON: each payload's metadata values and data in base64) with the headers
``Content-Type: application/json``, ``X-Namespace`` and, when the UI passes its user's
token or the CLI is given ``--codec-auth``, ``Authorization``; it answers the same shape
with the payloads decoded. A payload under a key id this server lacks (or damaged) comes
back as it was sent. ``POST /codec/encode`` (the UI's and CLI's inputs to new workflows
and signals) is served only with ``RUNYARD_CODEC_ENCODE=true``.

Who may call it: ``Authorization: Bearer <API key with scope admin>``; the Temporal UI's
passed-through login token when ``RUNYARD_CODEC_JWKS_URL`` is set (``api/codec_tokens.py``);
with ``RUNYARD_CODEC_LOOPBACK_OPEN=true`` (``runyard dev`` sets it) a caller on a loopback
address without a credential. Browsers: only the exact origins of
``RUNYARD_CODEC_ORIGINS`` (CORS); a request carrying another ``Origin`` is refused. Bodies
are capped at ``MAX_BODY_BYTES`` (413).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.api.common.v1 import Payload, Payloads

from api.auth import Principal, authenticate
from api.codec_tokens import UiTokenVerifier
from api.errors import PROBLEM_JSON, ProblemError, problem_response
from api.responses import Problem, operation_id, problems
from runyard.encryption import EncryptionCodec, is_encrypted, payload_keys
from runyard.settings import Settings

PREFIX = "/codec"
MAX_BODY_BYTES = 4 * 1024 * 1024
ALLOWED_HEADERS = "authorization, content-type, x-namespace"
log = structlog.get_logger("runyard.api")


class CodecPayload(BaseModel):
    """A Temporal payload in proto3 JSON."""

    model_config = ConfigDict(extra="allow")

    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="Each value base64 (e.g. encoding: base64 of 'binary/encrypted').",
        examples=[{"encoding": "YmluYXJ5L2VuY3J5cHRlZA==", "encryption-key-id": "azI="}],
    )
    data: str = Field(default="", description="The payload's bytes, base64.")


class CodecPayloads(BaseModel):
    payloads: list[CodecPayload]


_BODY_PROBLEMS: dict[int | str, dict[str, Any]] = {
    413: {
        "model": Problem,
        "description": f"PAYLOAD_TOO_LARGE (a body over {MAX_BODY_BYTES // 2**20} MiB)",
        "content": {
            PROBLEM_JSON: {
                "example": {
                    "type": "PAYLOAD_TOO_LARGE",
                    "title": "Payload too large",
                    "status": 413,
                    "detail": "the body is over 4 MiB",
                    "instance": "/codec/decode",
                    "requestId": "req_01h2xcejqtf2nbrexx3vqjhp41",
                }
            }
        },
    }
}
_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="API key",
    description="An API key with scope admin, or the Temporal UI's login token",
)


def _is_loopback(host: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(host or "")
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


@dataclass(frozen=True)
class Caller:
    """Who called, for the logs: an admin key, a UI user, or a loopback caller."""

    who: str
    org_id: str | None = None


async def _caller(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """An admin key, the Temporal UI's token (with RUNYARD_CODEC_JWKS_URL), or nothing from
    a loopback address when RUNYARD_CODEC_LOOPBACK_OPEN is on."""
    settings: Settings = request.app.state.settings
    client = request.client.host if request.client else None
    header = request.headers.get("authorization")
    if header is None and settings.codec_loopback_open and _is_loopback(client):
        return Caller("loopback")
    scheme, _sep, raw = (header or "").partition(" ")
    verifier: UiTokenVerifier | None = request.app.state.codec_tokens
    if verifier is not None and scheme.lower() == "bearer" and raw.count(".") == 2:
        claims = await verifier.verify(raw.strip())
        return Caller(f"ui:{claims.get('sub') or claims.get('email') or '?'}")
    state = request.app.state
    principal: Principal = await authenticate(
        request, state.db, state.rate_limiter, state.key_cache, state.secret_key
    )
    principal.require("admin")
    return Caller(f"key:{principal.key_id}", principal.org_id)


CallerDep = Annotated[Caller, Depends(_caller)]
NamespaceHeader = Annotated[
    str | None,
    Header(alias="X-Namespace", max_length=1000, description="The Temporal namespace."),
]


async def _payloads(request: Request) -> Payloads:
    """The body, at most ``MAX_BODY_BYTES``, as Temporal payloads."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _too_large()
    try:
        doc = json.loads(body)
        if not isinstance(doc, dict) or not isinstance(doc.get("payloads"), list):
            raise ValueError('expected {"payloads": [...]}')
        return json_format.ParseDict(
            {"payloads": doc["payloads"]}, Payloads(), ignore_unknown_fields=True
        )
    except (ValueError, RecursionError, json_format.ParseError) as exc:
        raise ProblemError(
            400,
            "VALIDATION_FAILED",
            f'the body must be {{"payloads": [...]}} of Temporal payloads in proto3 JSON: {exc}',
            extra={"errors": [{"field": "payloads", "code": "invalid", "message": str(exc)}]},
        ) from exc


def _too_large() -> ProblemError:
    return ProblemError(
        413,
        "PAYLOAD_TOO_LARGE",
        f"the body is over {MAX_BODY_BYTES // 2**20} MiB; send fewer payloads per call",
        title="Payload too large",
    )


def _answer(payloads: list[Payload]) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(Payloads(payloads=payloads))
    out.setdefault("payloads", [])
    return out


def _codec(request: Request) -> EncryptionCodec:
    codec: EncryptionCodec = request.app.state.codec
    return codec


def build_router(encode: bool) -> APIRouter:
    router = APIRouter(
        generate_unique_id_function=operation_id,
        prefix=PREFIX,
        tags=["codec"],
        responses={**problems(400, 401, 403, 429), **_BODY_PROBLEMS},
    )

    @router.post(
        "/decode",
        summary="Decrypt Temporal payloads (the Temporal UI's and CLI's codec endpoint)",
        response_model=CodecPayloads,
        openapi_extra={"requestBody": _request_body()},
    )
    async def codec_decode(
        request: Request, caller: CallerDep, namespace: NamespaceHeader = None
    ) -> dict[str, Any]:
        payloads = list((await _payloads(request)).payloads)
        decoded = _codec(request).decode_known(payloads)
        left = sum(1 for p in decoded if is_encrypted(p))
        log.info(
            "codec.decode",
            namespace=namespace,
            payloads=len(payloads),
            left_encoded=left,
            org_id=caller.org_id,
            caller=caller.who,
        )
        return _answer(decoded)

    if encode:

        @router.post(
            "/encode",
            summary="Encrypt Temporal payloads (RUNYARD_CODEC_ENCODE=true)",
            response_model=CodecPayloads,
            openapi_extra={"requestBody": _request_body()},
        )
        async def codec_encode(
            request: Request, caller: CallerDep, namespace: NamespaceHeader = None
        ) -> dict[str, Any]:
            payloads = list((await _payloads(request)).payloads)
            log.info(
                "codec.encode",
                namespace=namespace,
                payloads=len(payloads),
                org_id=caller.org_id,
                caller=caller.who,
            )
            return _answer(await _codec(request).encode(payloads))

    return router


def _request_body() -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CodecPayloads"}}},
    }


class CodecCors:
    """CORS for ``/codec/*`` with exact origins: a preflight from an allowed origin is
    answered here (no credential needed, as browsers send none); a request from any other
    origin is refused (403) before it reaches the route."""

    def __init__(self, app: ASGIApp, origins: frozenset[str]) -> None:
        self.app = app
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        origin = headers.get(b"origin", b"").decode("latin-1")
        if origin and origin not in self.origins:
            refused = problem_response(
                Request(scope),
                403,
                "FORBIDDEN",
                f"the origin {origin!r} may not call the codec server; allow it with "
                "RUNYARD_CODEC_ORIGINS",
                path=path,
            )
            await refused(scope, receive, send)
            return
        cors = self._headers(origin) if origin else []
        if scope.get("method") == "OPTIONS" and b"access-control-request-method" in headers:
            preflight = [
                *cors,
                (b"access-control-allow-methods", b"POST, OPTIONS"),
                (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                (b"access-control-max-age", b"600"),
                (b"content-length", b"0"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": preflight})
            await send({"type": "http.response.body", "body": b""})
            return

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start" and cors:
                message["headers"] = [*message.get("headers", []), *cors]
            await send(message)

        await self.app(scope, receive, with_cors)

    @staticmethod
    def _headers(origin: str) -> list[tuple[bytes, bytes]]:
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            # The UI's "include credentials" option sends cookies: allowed, never needed.
            (b"access-control-allow-credentials", b"true"),
            (b"vary", b"Origin"),
        ]


def install_codec_server(app: FastAPI, settings: Settings) -> None:
    """Mount the codec server when payload keys are configured; nothing otherwise."""
    keys = payload_keys(settings)
    if keys is None:
        return
    app.state.codec = EncryptionCodec(keys)
    app.state.codec_tokens = (
        UiTokenVerifier(
            settings.codec_jwks_url,
            issuer=settings.codec_token_issuer or "",
            audience=settings.codec_token_audience or "",
        )
        if settings.codec_jwks_url
        else None
    )
    app.include_router(build_router(settings.codec_encode))
    origins = frozenset(o.strip() for o in settings.codec_origins.split(",") if o.strip())
    app.add_middleware(CodecCors, origins=origins)
