"""A small SSE client for the tests: parses ``id``/``event``/``data`` frames and comments."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Frame:
    id: str | None = None
    event: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    comment: str | None = None


async def frames(resp: httpx.Response) -> AsyncIterator[Frame]:
    cur: dict[str, str] = {}
    async for line in resp.aiter_lines():
        if line == "":
            if cur:
                yield Frame(
                    id=cur.get("id"),
                    event=cur.get("event"),
                    data=json.loads(cur["data"]) if "data" in cur else {},
                )
            cur = {}
        elif line.startswith(":"):
            yield Frame(comment=line[1:].strip())
        else:
            name, _, value = line.partition(":")
            cur[name] = value.removeprefix(" ")


async def read_events(
    client: httpx.AsyncClient,
    run_id: str,
    *,
    stop_after: int | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    comments: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Read the stream until it closes, or until ``stop_after`` events (then disconnect)."""
    out: list[dict[str, Any]] = []
    async with client.stream(
        "GET", f"/v1/runs/{run_id}/events", headers=headers, params=params
    ) as resp:
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith("text/event-stream")
        async for fr in frames(resp):
            if fr.comment is not None:
                if comments is not None:
                    comments.append(fr.comment)
                continue
            assert fr.id == str(fr.data["seq"]) and fr.event == fr.data["type"]
            out.append(fr.data)
            if stop_after is not None and len(out) >= stop_after:
                break
    return out
