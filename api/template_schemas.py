"""Request bodies of ``/v1/templates`` (camelCase on the wire).

Every string, env names and values included, rejects NUL characters: Postgres cannot
store them, and no shell or sandbox should ever see one.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, field_validator

from api.schemas import Body
from runyard.approvals.policy import ApprovalPolicy

# A template's slug: 1 to 64 characters of [a-z0-9-].
SLUG_PATTERN = r"^[a-z0-9-]{1,64}$"
_SLUG = re.compile(SLUG_PATTERN)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_slug(value: str) -> bool:
    return _SLUG.fullmatch(value) is not None


def no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


_NoNul = AfterValidator(no_nul)
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), _NoNul]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200), _NoNul]
Image = Annotated[str, StringConstraints(min_length=1, max_length=500), _NoNul]
SetupScript = Annotated[str, StringConstraints(min_length=1, max_length=65_536), _NoNul]
EnvValue = Annotated[str, StringConstraints(max_length=32_768), _NoNul]
Size = Literal["s", "m", "l", "xl"]
Provider = Literal["local", "e2b"]
Network = Literal["none", "full"]


class TemplateDefaults(Body):
    """What a run that leaves these out gets; bounds as on ``POST /v1/runs``."""

    model: ModelName | None = None
    max_turns: int | None = Field(default=None, ge=1, le=1000)
    max_cost_usd: float | None = Field(default=None, ge=0.01, le=1000)
    # The lower bound (30 s by default) is the server's setting, checked by the route.
    timeout_seconds: int | None = Field(default=None, ge=1, le=3600)


def _check_env(v: dict[str, str] | None) -> dict[str, str] | None:
    for k in v or {}:
        if not _ENV_NAME.match(k):
            raise ValueError(f"{k!r} is not a valid environment variable name")
    return v


class TemplateBody(Body):
    slug: Slug
    name: Name | None = None
    size: Size = "m"
    provider: Provider = "local"
    image: Image | None = None
    env: dict[str, EnvValue] = Field(default_factory=dict, max_length=200)
    setup_script: SetupScript | None = None
    network: Network = "none"
    defaults: TemplateDefaults = Field(default_factory=TemplateDefaults)
    # The default approval policy of the template's runs (runs may only tighten it).
    approvals: ApprovalPolicy | None = None

    _env = field_validator("env")(_check_env)


class TemplatePatch(Body):
    """Fields given replace the template's (``env`` and ``defaults`` as a whole); ``image``
    and ``setupScript`` may be set to null. ``slug`` cannot change."""

    slug: Slug | None = None
    name: Name | None = None
    size: Size | None = None
    provider: Provider | None = None
    image: Image | None = None
    env: dict[str, EnvValue] | None = Field(default=None, max_length=200)
    setup_script: SetupScript | None = None
    network: Network | None = None
    defaults: TemplateDefaults | None = None
    approvals: ApprovalPolicy | None = None  # null: no policy

    _env = field_validator("env")(_check_env)
