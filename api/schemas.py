"""Request bodies and query parameters (camelCase on the wire)."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from runyard.approvals.policy import ApprovalPolicy
from runyard.jsonsafe import json_problem

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _iso_8601_only(value: Any) -> Any:
    # pydantic would read a bare number as seconds since 1970; a time filter of "0.5" is
    # far more likely a mistake than a request for 00:00:00.5 on 1 January 1970.
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("must be an ISO 8601 date-time, for instance 2026-01-31T12:00:00Z")
    return value


# A time with its zone: a naive one is refused (VALIDATION_FAILED, code ``timezone_aware``),
# since the server could only guess which zone it meant.
Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_8601_only)]


def _json_rules(data: Any) -> Any:
    """The one check of every JSON body a client sends (``runyard.jsonsafe``): no NUL
    character anywhere (Postgres cannot store one, a sandbox cannot put one in an
    environment variable, no prompt needs one), no NaN or Infinity (JSON has neither; a
    stored one broke every later read), no nesting deeper than 32 levels."""
    if isinstance(data, dict):
        for key, value in data.items():
            problem = json_problem(key) or json_problem(value, depth=1)
            if problem:
                raise ValueError(f"{key!r} {problem}")
    elif problem := json_problem(data):
        raise ValueError(f"the body {problem}")
    return data


class Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _json_rules(cls, data: Any) -> Any:
        return _json_rules(data)


class CreateRun(Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "prompt": "Refactor the auth middleware to use JWT",
                    "model": "sonnet",
                    "maxTurns": 100,
                    "maxCostUsd": 5,
                    "metadata": {"ticket": "SEC-12"},
                }
            ]
        }
    )

    prompt: str = Field(min_length=1, max_length=100_000)
    repo: str | None = Field(default=None, min_length=1, max_length=2048)
    template: str = Field(default="default", min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")
    agent_id: str | None = Field(default=None, max_length=64)
    thread_id: str | None = Field(default=None, max_length=64)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    guidance: str | None = Field(default=None, max_length=100_000)
    env: dict[str, str] = Field(default_factory=dict, max_length=200)
    max_turns: int | None = Field(default=None, ge=1, le=1000)
    max_cost_usd: float | None = Field(default=None, ge=0.01, le=1000)
    timeout_seconds: int | None = Field(default=None, le=3600)
    callback_url: str | None = Field(default=None, max_length=2048)
    metadata: dict[str, Any] = Field(default_factory=dict)
    start: bool = False
    # Best-of-N (issue 26): this many runs of the body, in one group; the answer is the
    # first, each carries the groupId (GET /v1/runs?groupId= lists them).
    attempts: int | None = Field(default=None, ge=1, le=4)
    # Tightens the template's approval policy for this run (runyard.approvals).
    approvals: ApprovalPolicy | None = None

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not _ENV_NAME.match(k):
                raise ValueError(f"{k!r} is not a valid environment variable name")
            if len(val) > 32_768:
                raise ValueError(f"the value of {k} is longer than 32768 characters")
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(v)) > 16_384:
            raise ValueError("metadata must serialise to at most 16 KiB of JSON")
        return v

    @field_validator("callback_url")
    @classmethod
    def _callback(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/?#]+", v):
            raise ValueError("callbackUrl must be an absolute http(s) URL")
        return v


def _utf8_size(v: str, lo: int, hi: int, what: str) -> str:
    size = len(v.encode("utf-8"))
    if not lo <= size <= hi:
        raise ValueError(
            f"{what} must be {lo} byte to {hi // 1024} KiB of UTF-8; it is {size} bytes"
        )
    return v


class RunInputBody(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"content": "Use teal."}]})

    content: str

    @field_validator("content")
    @classmethod
    def _size(cls, v: str) -> str:
        return _utf8_size(v, 1, 32 * 1024, "content")


class CreateThreadRun(CreateRun):
    route_id: str | None = Field(default=None, min_length=1, max_length=200)
    persona_id: str | None = Field(
        default=None, max_length=200, pattern=r"^[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+$"
    )
    start: bool = True
    # How the run meets an open run of the thread (runyard/runs/thread_order.py).
    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] = "reject"


class CreateThread(Body):
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(v)) > 16_384:
            raise ValueError("metadata must serialise to at most 16 KiB of JSON")
        return v


# A template slug (API.md: 1 to 64 characters of [a-z0-9-]).
_SLUG = r"^[a-z0-9-]+$"


class AgentBody(Body):
    name: str = Field(min_length=1, max_length=200)
    instructions: str = Field(min_length=1, max_length=100_000)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    template: str | None = Field(default=None, min_length=1, max_length=64, pattern=_SLUG)


class AgentPatch(Body):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    instructions: str | None = Field(default=None, min_length=1, max_length=100_000)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    template: str | None = Field(default=None, min_length=1, max_length=64, pattern=_SLUG)


class WebhookBody(Body):
    url: str = Field(min_length=1, max_length=2048)
    events: list[str] | None = Field(default=None, min_length=1, max_length=20)
    enabled: bool = True


class WebhookPatch(Body):
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    events: list[str] | None = Field(default=None, min_length=1, max_length=20)
    enabled: bool | None = None


class WatchBody(Body):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"callbackUrl": "https://example.com/hooks/runyard"}]}
    )

    callback_url: str = Field(min_length=1, max_length=2048)
