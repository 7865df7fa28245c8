"""The calls of checkpoints, forks and groups (issue 26), shared by both clients."""

from __future__ import annotations

from typing import Any

import httpx

from runyard.client._core import Call, checked, is_json, not_runyard
from runyard.client.models import RunyardAPIError


def fork_call(
    run_id: str,
    turn: int,
    *,
    restore: str,
    prompt: str | None,
    attempts: int,
    model: str | None,
    start: bool,
    metadata: dict[str, Any] | None,
    idempotency_key: str | None,
) -> Call:
    body: dict[str, Any] = {"turn": turn, "restore": restore, "attempts": attempts, "start": start}
    for name, value in (("prompt", prompt), ("model", model), ("metadata", metadata)):
        if value is not None:
            body[name] = value
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return Call("POST", f"/v1/runs/{run_id}/fork", json=body, headers=headers)


def checkpoints_call(run_id: str, page: int, limit: int) -> Call:
    return Call("GET", f"/v1/runs/{run_id}/checkpoints", params={"page": page, "limit": limit})


def diff_call(run_id: str, turn: int, vs: str) -> Call:
    return Call("GET", f"/v1/runs/{run_id}/checkpoints/{turn}/diff", params={"vs": vs})


def diff_text(resp: httpx.Response) -> str:
    checked(resp)
    if is_json(resp) or not resp.headers.get("content-type", "").startswith("text/x-diff"):
        raise RunyardAPIError(not_runyard(resp, "a diff"))
    return resp.text
