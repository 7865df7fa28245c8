"""What the sync and async clients share: the requests they build, how an answer becomes
a model or a ``RunyardAPIError``, and how a server-sent event becomes an ``Event``."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from httpx_sse import ServerSentEvent
from pydantic import BaseModel, ValidationError

from runyard import __version__
from runyard.client.models import Event, Problem, RunyardAPIError
from runyard.run_model import CLIENT

DEFAULT_API_URL = "http://127.0.0.1:8000"
M = TypeVar("M", bound=BaseModel)

# Reads on the event stream wait this long: the server pings at least every 15 s, so a
# silence this long is a dead connection, and the stream is resumed.
STREAM_READ_TIMEOUT = 60.0


def sleep(seconds: float) -> None:
    """The blocking client's pause (``_sync.py`` is generated: ``asleep`` becomes this)."""
    time.sleep(seconds)


async def asleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


@dataclass
class Call:
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def base_settings(base_url: str | None, api_key: str | None) -> tuple[str, dict[str, str]]:
    """The API URL and the headers of a client: arguments first, then ``RUNYARD_API_URL``
    and ``RUNYARD_API_KEY``."""
    url = (base_url or os.environ.get("RUNYARD_API_URL") or DEFAULT_API_URL).rstrip("/")
    key = api_key or os.environ.get("RUNYARD_API_KEY")
    headers = {"User-Agent": f"runyard-python/{__version__}"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return url, headers


def create_call(
    prompt: str,
    *,
    start: bool,
    idempotency_key: str | None,
    fields: dict[str, Any],
) -> Call:
    names = {
        "agent_id": "agentId",
        "thread_id": "threadId",
        "max_turns": "maxTurns",
        "max_cost_usd": "maxCostUsd",
        "timeout_seconds": "timeoutSeconds",
        "callback_url": "callbackUrl",
    }  # attempts (issue 26) is the same in both
    body: dict[str, Any] = {"prompt": prompt, "start": start}
    body |= {names.get(k, k): v for k, v in fields.items() if v is not None}
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return Call("POST", "/v1/runs", json=body, headers=headers)


def list_call(
    status: str | list[str] | None,
    thread_id: str | None,
    agent_id: str | None,
    template: str | None,
    page: int,
    limit: int,
    group_id: str | None = None,
) -> Call:
    params: dict[str, Any] = {"page": page, "limit": limit}
    if status:
        params["status"] = status if isinstance(status, str) else ",".join(status)
    named = (("threadId", thread_id), ("agentId", agent_id), ("template", template))
    for name, value in (*named, ("groupId", group_id)):
        if value:
            params[name] = value
    return Call("GET", "/v1/runs", params=params)


def answer_call(run_id: str, content: str, idempotency_key: str | None) -> Call:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return Call("POST", f"/v1/runs/{run_id}/input", json={"content": content}, headers=headers)


def command_call(run_id: str, method: str, params: dict[str, Any] | None) -> Call:
    body = {"jsonrpc": "2.0", "method": method, "params": params or {}, "id": 1}
    return Call("POST", f"/v1/runs/{run_id}/command", json=body)


def thread_run_call(
    thread_id: str, prompt: str, strategy: str, start: bool, fields: dict[str, Any]
) -> Call:
    body = create_call(prompt, start=start, idempotency_key=None, fields=fields).json
    body["multitaskStrategy"] = strategy
    return Call("POST", f"/v1/threads/{thread_id}/runs", json=body)


def message_call(run_id: str, content: str, mode: str, expected_turn: int | None) -> Call:
    body: dict[str, Any] = {"content": content, "mode": mode}
    if expected_turn is not None:
        body["expectedTurn"] = expected_turn
    return Call("POST", f"/v1/runs/{run_id}/messages", json=body)


def messages_call(run_id: str, status: str | None, page: int, limit: int) -> Call:
    params: dict[str, Any] = {"page": page, "limit": limit}
    if status:
        params["status"] = status
    return Call("GET", f"/v1/runs/{run_id}/messages", params=params)


def approvals_call(run_id: str, status: str | None, page: int, limit: int) -> Call:
    params: dict[str, Any] = {"page": page, "limit": limit}
    if status:
        params["status"] = status
    return Call("GET", f"/v1/runs/{run_id}/approvals", params=params)


def decision_call(
    run_id: str,
    approval_id: str | None,
    body: dict[str, Any],
    idempotency_key: str | None,
) -> Call:
    """One decision (``approval_id``), or a batch (``body`` = ``{"decisions": [...]}``)."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    path = f"/v1/runs/{run_id}/approvals" + (f"/{approval_id}" if approval_id else "")
    fields = {k: v for k, v in body.items() if v is not None}
    return Call("POST", path, json=fields, headers=headers)


def stream_headers(cursor: int) -> dict[str, str]:
    return {"Accept": "text/event-stream", "Last-Event-ID": str(cursor)}


def connection_error(url: str, exc: Exception) -> RunyardAPIError:
    reason = str(exc) or type(exc).__name__
    return RunyardAPIError(
        Problem(
            type="CONNECTION_ERROR",
            title="API unreachable",
            status=0,
            detail=f"cannot reach the Runyard API at {url}: {reason}",
        )
    )


def not_runyard(resp: httpx.Response, what: str = "a Runyard answer") -> Problem:
    """An answer that is not JSON, or JSON that is not ``what``: the URL is some other
    server (the Temporal UI's port, a proxy's error page), which "Expecting value: line 1
    column 1" did not say."""
    kind = resp.headers.get("content-type", "").split(";")[0].strip() or "no content type"
    shape = f"JSON that is not {what}" if is_json(resp) else f"{kind}, not JSON"
    base = f"{resp.request.url.scheme}://{resp.request.url.netloc.decode()}"
    return Problem(
        type="NOT_RUNYARD_API",
        title="Not a Runyard API",
        status=resp.status_code,
        detail=f"{resp.request.method} {resp.request.url.path} answered HTTP "
        f"{resp.status_code} with {shape}: is {base} the Runyard API? "
        "(RUNYARD_API_URL or --api-url)",
    )


def is_json(resp: httpx.Response) -> bool:
    media: str = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def problem_of(resp: httpx.Response) -> Problem:
    """The problem document of an error answer (or one made up from a non-problem answer)."""
    if not is_json(resp):
        return not_runyard(resp)
    try:
        return Problem.model_validate(resp.json())
    except (ValueError, ValidationError):
        text = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else ""
        return Problem(
            type="HTTP_ERROR",
            title=resp.reason_phrase or "HTTP error",
            status=resp.status_code,
            detail=text or f"HTTP {resp.status_code} from {resp.request.url}",
        )


def checked(resp: httpx.Response) -> httpx.Response:
    if resp.status_code >= 400:
        raise RunyardAPIError(problem_of(resp))
    return resp


def parse(resp: httpx.Response, model: type[M]) -> M:
    checked(resp)
    if not is_json(resp):
        raise RunyardAPIError(not_runyard(resp))
    try:
        return model.model_validate(resp.json(), context=CLIENT)
    except (ValueError, ValidationError) as exc:
        raise _bad_response(resp, exc) from exc


def command_result(resp: httpx.Response) -> Any:
    """The ``result`` of a JSON-RPC answer; its ``error`` is raised as a problem."""
    if resp.status_code == 204:
        return None
    try:
        body = resp.json()
    except ValueError:
        checked(resp)
        raise
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        raise RunyardAPIError(
            Problem(
                type="COMMAND_FAILED",
                title="Command failed",
                status=resp.status_code,
                detail=f"{err.get('message', 'error')} (JSON-RPC {err.get('code')})",
                jsonrpc_error=err,
            )
        )
    checked(resp)
    return body.get("result") if isinstance(body, dict) else body


def log_events(resp: httpx.Response) -> list[Event]:
    """The events of a ``/logs`` answer (JSON lines)."""
    checked(resp)
    media = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-ndjson" and not is_json(resp):
        raise RunyardAPIError(not_runyard(resp))
    try:
        return [
            Event.model_validate(json.loads(line))
            for line in resp.text.splitlines()
            if line.strip()
        ]
    except (ValueError, ValidationError) as exc:
        raise _bad_response(resp, exc) from exc


def event_list(resp: httpx.Response) -> list[Event]:
    """The events of a JSON page of ``/events``."""
    checked(resp)
    if not is_json(resp):
        raise RunyardAPIError(not_runyard(resp))
    try:
        return [Event.model_validate(e) for e in resp.json()]
    except (ValueError, TypeError, ValidationError) as exc:
        raise _bad_response(resp, exc) from exc


def _bad_response(resp: httpx.Response, exc: Exception) -> RunyardAPIError:
    return RunyardAPIError(
        Problem(
            type="BAD_RESPONSE",
            title="Unexpected answer",
            status=resp.status_code,
            detail=f"{resp.request.method} {resp.request.url.path} answered: {exc}",
        )
    )


def stream_event(sse: ServerSentEvent) -> Event | None:
    """The run event of one server-sent event (``httpx-sse`` parses the frames; comments,
    the server's pings, never reach here; a frame without data answers ``None``)."""
    if not sse.data:
        return None
    try:
        return Event.model_validate_json(sse.data)
    except ValidationError as exc:
        raise RunyardAPIError(
            Problem(
                type="BAD_RESPONSE",
                title="Unexpected answer",
                status=200,
                detail=f"an event of the stream is not a run event: {exc}",
            )
        ) from exc
