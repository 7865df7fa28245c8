"""Connection tokens: a JWT (HS256, 24 h) that opens one run's read, stream and input paths.

For a browser or an IDE that must not hold the organization's key. Claims: ``sub`` and
``run`` (the run id), ``org``, ``key`` (the API key that asked for it: revoking the key
revokes its tokens), ``scope`` (the key's ``runs:*`` scopes, never ``admin``), ``aud``,
``iat`` and ``exp``. Accepted only on the paths in ``TOKEN_PATHS`` of that one run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from api.errors import ProblemError

ALGORITHM = "HS256"
AUDIENCE = "runyard:run"
TOKEN_TTL = timedelta(hours=24)
TOKEN_SCOPES = frozenset({"runs:read", "runs:write"})

# (method, what follows /v1/runs/{id}) pairs a token opens; API.md lists them.
TOKEN_PATHS = frozenset(
    {
        ("GET", ""),
        ("GET", "/status"),
        ("GET", "/events"),
        ("GET", "/logs"),
        ("GET", "/session-logs"),
        ("GET", "/artifacts"),
        ("POST", "/input"),
        ("POST", "/command"),
        ("GET", "/approvals"),
        ("POST", "/approvals"),
    }
)
_RUN_PATH = re.compile(r"^/v1/runs/(?P<run>[^/]+)(?P<rest>/[a-z-]+)?$")


@dataclass(frozen=True)
class TokenClaims:
    run_id: str
    org_id: str
    key_id: str
    scopes: frozenset[str]


def looks_like_token(raw: str) -> bool:
    return raw.count(".") == 2


def issue_token(
    secret: bytes, *, run_id: str, org_id: str, key_id: str, scopes: frozenset[str]
) -> tuple[str, datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    expires = now + TOKEN_TTL
    claims = {
        "sub": run_id,
        "run": run_id,
        "org": org_id,
        "key": key_id,
        "scope": " ".join(sorted(scopes & TOKEN_SCOPES)),
        "aud": AUDIENCE,
        "iat": now,
        "exp": expires,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires


def verify_token(secret: bytes, token: str) -> TokenClaims:
    """The token's claims, or 401 ``API_KEY_INVALID`` (bad signature, expired, malformed)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["exp", "iat", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise ProblemError(401, "API_KEY_INVALID", "the connection token has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise ProblemError(401, "API_KEY_INVALID", "the connection token is not valid") from exc
    run, org, key = claims.get("run"), claims.get("org"), claims.get("key")
    scope = claims.get("scope", "")
    if not all(isinstance(v, str) and v for v in (run, org, key)) or claims["sub"] != run:
        raise ProblemError(401, "API_KEY_INVALID", "the connection token is not valid")
    if not isinstance(scope, str):
        raise ProblemError(401, "API_KEY_INVALID", "the connection token is not valid")
    assert isinstance(run, str) and isinstance(org, str) and isinstance(key, str)
    return TokenClaims(
        run_id=run, org_id=org, key_id=key, scopes=frozenset(scope.split()) & TOKEN_SCOPES
    )


def token_opens(method: str, path: str, run_id: str) -> bool:
    """Whether a token of ``run_id`` may be used for this request."""
    match = _RUN_PATH.match(path)
    if match is None or match["run"] != run_id:
        return False
    return (method.upper(), match["rest"] or "") in TOKEN_PATHS
