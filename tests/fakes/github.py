"""The subset of GitHub's REST API that Runyard uses, on loopback, recording requests:
``GET /repos/{o}/{r}``, ``POST /repos/{o}/{r}/pulls``, ``POST /repos/{o}/{r}/issues``."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runyard.devserver import free_port


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeGitHub:
    def __init__(self, default_branch: str = "main") -> None:
        self.calls: list[Call] = []
        self.default_branch = default_branch
        self.port = free_port()
        self._numbers = iter(range(1, 10_000))
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake.handle(self)

            def do_POST(self) -> None:
                fake.handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        body = json.loads(raw) if raw else {}
        self.calls.append(Call(h.command, h.path, dict(h.headers.items()), body))
        parts = h.path.strip("/").split("/")
        status: int = 404
        answer: dict[str, Any] = {"message": "Not Found"}
        if len(parts) >= 3 and parts[0] == "repos":
            html = f"https://github.example/{parts[1]}/{parts[2]}"
            if h.command == "GET" and len(parts) == 3:
                status, answer = (
                    200,
                    {"full_name": f"{parts[1]}/{parts[2]}", "default_branch": self.default_branch},
                )
            elif h.command == "POST" and len(parts) == 4 and parts[3] in ("pulls", "issues"):
                n = next(self._numbers)
                kind = "pull" if parts[3] == "pulls" else "issues"
                status, answer = 201, {"number": n, "html_url": f"{html}/{kind}/{n}"}
        data = json.dumps(answer).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
