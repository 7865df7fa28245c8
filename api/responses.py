"""What the OpenAPI document says the API answers: the problem document of every error
(RFC 9457, ``application/problem+json``), the error statuses each route declares, and the
base of the response models.

Routes declare ``responses=problems(400, 404, …)`` with the statuses they can really
answer; routers add ``AUTHENTICATED`` (401, 403, 429). ``install_openapi`` moves those
declarations to ``application/problem+json`` and drops the 422 FastAPI would list: a
request that fails validation gets a 400 ``VALIDATION_FAILED`` problem here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from api.errors import PROBLEM_JSON, title_of
from runyard.run_model import ApiModel
from runyard.run_model import Number as Number
from runyard.run_model import Rfc3339 as Rfc3339


class Out(ApiModel):
    """A response object: camelCase on the wire. Routes return dicts that are checked
    against the model; fields a model does not name still pass (``extra="allow"``), and
    routes answer with ``response_model_exclude_unset`` so what a route leaves out stays
    out (no ``null`` appears that the route did not write)."""


class FieldError(BaseModel):
    field: str = Field(examples=["prompt"])
    message: str = Field(examples=["String should have at least 1 character"])
    code: str = Field(examples=["string_too_short"])


class Problem(BaseModel):
    """An RFC 9457 problem document: every error the API answers."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    type: str = Field(description="The machine code (API.md's table).", examples=["NOT_FOUND"])
    title: str = Field(description="The code in plain English, the same for every occurrence.")
    status: int = Field(description="The HTTP status.")
    detail: str = Field(description="What went wrong this time.")
    instance: str | None = Field(description="The request's path.")
    request_id: str | None = Field(alias="requestId", description="Also in X-Request-Id.")
    errors: list[FieldError] | None = Field(
        default=None, description="With VALIDATION_FAILED: each field that failed."
    )


_CODE = re.compile(r"[A-Z][A-Z_]+[A-Z]\b")

# status: (the codes it carries, an example code, an example detail)
_STATUSES: dict[int, tuple[str, str, str]] = {
    400: (
        "VALIDATION_FAILED, BAD_REQUEST (invalid body, parameters or state; a body that is "
        "not application/json; an unknown query parameter)",
        "VALIDATION_FAILED",
        "prompt: String should have at least 1 character",
    ),
    401: (
        "AUTH_UNAUTHORIZED (no key), API_KEY_INVALID (unknown, revoked or expired key)",
        "AUTH_UNAUTHORIZED",
        "send 'Authorization: Bearer <api key>'",
    ),
    402: (
        "USAGE_INSUFFICIENT_CREDITS (credits are on and the balance is not above zero)",
        "USAGE_INSUFFICIENT_CREDITS",
        "the organization has 0 credits left; an operator can add some with "
        "'runyard credits grant'",
    ),
    403: ("FORBIDDEN (the key lacks the scope)", "FORBIDDEN", "this API key lacks a scope"),
    404: (
        "NOT_FOUND and the resource's *_NOT_FOUND (also another organization's resource)",
        "RUN_NOT_FOUND",
        "no run run_abc",
    ),
    409: ("CONFLICT and the route's conflicts", "CONFLICT", "the resource is in another state"),
    410: (
        "EVENTS_EXPIRED (the cursor is older than the retention window)",
        "EVENTS_EXPIRED",
        "events after seq 0 of run_abc are older than the retention window",
    ),
    422: (
        "CALLBACK_URL_FORBIDDEN (a URL resolves to a loopback, private, link-local or "
        "metadata address)",
        "CALLBACK_URL_FORBIDDEN",
        "callbackUrl: 169.254.169.254 is a link-local address",
    ),
    429: (
        "RATE_LIMIT_EXCEEDED (per API key, with Retry-After)",
        "RATE_LIMIT_EXCEEDED",
        "more than 200 requests in a minute for this key",
    ),
    502: (
        "RUN_ORCHESTRATOR_ERROR (the workflow engine could not be reached)",
        "RUN_ORCHESTRATOR_ERROR",
        "the workflow engine could not be reached",
    ),
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": 'The accepted scheme: Bearer realm="runyard"',
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}},
    },
}


def problems(*statuses: int, **notes: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that can answer these error statuses; ``notes``
    (``s409="RUN_ALREADY_STARTED …"``) say which codes the route adds to a status."""
    stray = [n for n in notes if int(n.removeprefix("s")) not in statuses]
    if stray:
        raise ValueError(f"notes {stray} name statuses the route does not list")
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        codes, code, detail = _STATUSES[status]
        note = notes.get(f"s{status}")
        named = _CODE.match(note) if note else None
        if named:  # the route's own code makes the better example
            code = named.group(0)
        example = {
            "type": code,
            "title": title_of(code, status),
            "status": status,
            "detail": detail,
            "instance": "/v1/runs/run_abc",  # each operation's own path, once built
            "requestId": "req_01h2xcejqtf2nbrexx3vqjhp41",
        }
        response: dict[str, Any] = {
            "model": Problem,
            "description": f"{codes}; {note}" if note else codes,
            "content": {PROBLEM_JSON: {"example": example}},
        }
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        out[status] = response
    return out


# Every route behind an API key: no key or a bad one, a missing scope, the rate limit.
AUTHENTICATED = problems(401, 403, 429)


def _problem_media(schema: dict[str, Any]) -> None:
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses: dict[str, Any] = operation.get("responses", {})
            validation = responses.get("422", {}).get("content", {}).get("application/json")
            if validation and "HTTPValidationError" in str(validation):
                del responses["422"]  # FastAPI's: this API answers 400 VALIDATION_FAILED
            for status, response in responses.items():
                content = response.get("content", {})
                ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
                if status[0] in "45" and ref.endswith("/Problem"):
                    moved = content.pop("application/json")
                    content[PROBLEM_JSON] = {**moved, **content.get(PROBLEM_JSON, {})}
                    content[PROBLEM_JSON]["example"]["instance"] = path
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)


def install_openapi(app: FastAPI, *finish: Callable[[FastAPI, dict[str, Any]], None]) -> None:
    """Serve the OpenAPI document with problem+json errors and without FastAPI's 422;
    each of ``finish`` then completes it once, when it is first built."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None
        schema = build()
        if first:
            _problem_media(schema)
            for step in finish:
                step(app, schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def answers(model: Any, *statuses: int, keyed: bool = False, **notes: str) -> dict[str, Any]:
    """A route's decorator arguments: its response model (checked, what the route leaves
    out stays out) and the error statuses it can answer besides those of its router's
    ``responses=AUTHENTICATED`` (``keyed``: add those here, for a router without them)."""
    responses = problems(*statuses, **notes)
    return {
        "response_model": model,
        "response_model_exclude_unset": True,
        "responses": {**AUTHENTICATED, **responses} if keyed else responses,
    }


def operation_id(route: APIRoute) -> str:
    """A route's operationId: its function's name (``get_run``), which generated clients
    name their functions after (FastAPI's default was ``get_run_v1_runs__run_id__get``)."""
    return route.name
