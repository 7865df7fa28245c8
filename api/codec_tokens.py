"""The Temporal UI's passed-through token, accepted by the codec server.

A Temporal UI with a login (OIDC) and ``codec.passAccessToken`` sends its user's access
token to the codec endpoint as ``Authorization: Bearer <token>`` (only to an https
endpoint). With ``RUNYARD_CODEC_JWKS_URL`` (the identity provider's JSON Web Key Set),
``RUNYARD_CODEC_TOKEN_ISSUER`` and ``RUNYARD_CODEC_TOKEN_AUDIENCE`` set, the codec server
accepts such a token when its signature verifies against the set (asymmetric algorithms
only), it has not expired, and its ``iss`` and ``aud`` are the configured ones. The key
set is fetched by the API (an address the operator chose) and cached.
"""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
import structlog

from api.errors import ProblemError

# Never "none" nor a shared-secret algorithm: the key set holds public keys.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
FETCH_TIMEOUT_SECONDS = 5.0
log = structlog.get_logger("runyard.api")


def _refused(detail: str) -> ProblemError:
    return ProblemError(401, "API_KEY_INVALID", detail)


class UiTokenVerifier:
    def __init__(self, jwks_url: str, *, issuer: str, audience: str) -> None:
        self.issuer, self.audience = issuer, audience
        self._keys = jwt.PyJWKClient(
            jwks_url, cache_keys=True, lifespan=300, timeout=FETCH_TIMEOUT_SECONDS
        )

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or a 401 problem saying why it is refused."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise _refused("neither an API key nor a token of the Temporal UI's login") from exc
        if header.get("alg") not in ALGORITHMS:
            raise _refused(f"the UI token's algorithm {header.get('alg')!r} is not accepted")
        try:
            key = await asyncio.to_thread(self._keys.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as exc:
            log.warning("codec.jwks_unreachable", error=str(exc))
            raise _refused("the identity provider's keys could not be fetched") from exc
        except jwt.PyJWKClientError as exc:
            raise _refused(f"the UI token's signing key is unknown: {exc}") from exc
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud"]},
                leeway=30,
            )
        except jwt.InvalidTokenError as exc:
            raise _refused(f"the UI token is not valid: {exc}") from exc
        return claims
