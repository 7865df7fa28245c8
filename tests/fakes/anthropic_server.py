"""A local HTTP server that speaks the Anthropic Messages API streaming wire format.

The real ``anthropic`` SDK talks to it through ``ANTHROPIC_BASE_URL``. Tests queue the
replies (text, tool_use, usage, or an HTTP error) and read back every request body.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Reply:
    blocks: list[dict[str, Any]] = field(default_factory=list)  # {"text"} / {"tool_use": {...}}
    usage: dict[str, int] = field(default_factory=dict)
    status: int = 200  # an error status answers with an Anthropic error body instead
    delay: float = 0.0
    cut: bool = False  # drop the connection after the first text block's first deltas


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class FakeAnthropic:
    def __init__(self) -> None:
        self.replies: queue.Queue[Reply] = queue.Queue()
        self.requests: list[dict[str, Any]] = []
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._count = 0

    def queue(self, *replies: Reply) -> None:
        for r in replies:
            self.replies.put(r)

    def reset(self) -> None:
        while not self.replies.empty():
            self.replies.get_nowait()
        self.requests.clear()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _messages(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        try:
            reply = self.replies.get_nowait()
        except queue.Empty:
            reply = Reply(blocks=[{"text": "no reply queued"}])
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return JSONResponse(
                {"type": "error", "error": {"type": "api_error", "message": "injected failure"}},
                status_code=reply.status,
            )
        self._count += 1
        return StreamingResponse(
            self._stream(body, reply, self._count), media_type="text/event-stream"
        )

    async def _stream(self, body: dict[str, Any], reply: Reply, n: int) -> AsyncIterator[bytes]:
        u = reply.usage
        yield _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_fake_{n}",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": u.get("input", 10),
                        "output_tokens": 1,
                        "cache_creation_input_tokens": u.get("cache_write", 0),
                        "cache_read_input_tokens": u.get("cache_read", 0),
                    },
                },
            },
        )
        stop = "end_turn"
        for i, block in enumerate(reply.blocks):
            if "text" in block:
                yield _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                text = block["text"]
                for j in range(0, len(text), 5):
                    yield _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "text_delta", "text": text[j : j + 5]},
                        },
                    )
                    if reply.cut and j >= 5:
                        await asyncio.sleep(0.2)  # let the client commit what it has
                        raise ConnectionAbortedError("injected: connection dropped mid-stream")
            else:
                tu = block["tool_use"]
                stop = "tool_use"
                yield _sse(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {
                            "type": "tool_use",
                            "id": tu["id"],
                            "name": tu["name"],
                            "input": {},
                        },
                    },
                )
                raw = json.dumps(tu["input"])
                for j in range(0, len(raw), 7):
                    yield _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "input_json_delta", "partial_json": raw[j : j + 7]},
                        },
                    )
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": i})
        yield _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": u.get("output", 5)},
            },
        )
        yield _sse("message_stop", {"type": "message_stop"})

    def start(self) -> None:
        app = Starlette(routes=[Route("/v1/messages", self._messages, methods=["POST"])])
        sock_port = _free_port()
        self.port = sock_port
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=sock_port, log_level="error")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        import time

        while not self._server.started:
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
