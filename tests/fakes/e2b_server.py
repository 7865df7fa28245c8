"""A local server that speaks E2B's wire format, so the real ``e2b`` SDK runs against it.

Two faces on one port (the SDK's ``api_url`` and ``sandbox_url`` both point here):

- the E2B REST API the SDK calls for sandboxes: ``POST /v2/sandboxes``, ``GET
  /v2/sandboxes`` (metadata and state filters), ``POST /v2/sandboxes/{id}/connect``
  (resumes a paused one), ``POST /sandboxes/{id}/pause``, ``DELETE /sandboxes/{id}``,
  ``POST /sandboxes/{id}/timeout``, ``PUT /sandboxes/{id}/network``; ``X-API-KEY``
  checked;
- envd, the daemon inside a sandbox, picked by the ``E2b-Sandbox-Id`` header with its
  ``X-Access-Token``: Connect RPC with the JSON codec for ``process.Process/Start``
  (server stream: start, data, end), ``SendSignal``, and ``filesystem.Filesystem`` Stat,
  ListDir, MakeDir, Remove; plain HTTP ``GET``/``POST /files`` and ``/health``. A paused
  or killed sandbox answers 502 "... was not found", as E2B's proxy does.

Commands run for real on this machine, each in bubblewrap with the sandbox's own
directory bound at ``/workspace`` (the rest of the file system is the host's: it is a
test fake, not isolation). As in envd, a command outlives its stream and is killed only
at its ``Connect-Timeout-Ms``. File paths under /workspace map to that directory, other
absolute paths to a private directory of the sandbox. Every process of a sandbox
carries a marker in its environment: a pause stops them (SIGSTOP), a resume continues
them, a kill kills them.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import signal
import threading
import urllib.parse
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runyard.devserver import free_port
from tests.fakes.e2b_envd import FakeEnvd, FakeSandbox, api_error


class FakeE2B(FakeEnvd):
    def __init__(self, root: Path, api_key: str = "e2b_test_key") -> None:
        self.root = root
        self.api_key = api_key
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every call
        self._tasks: set[asyncio.Task[None]] = set()
        # GET /files once each ended: (path, bytes sent, whether all of the file was).
        self.downloads: list[tuple[str, int, bool]] = []
        self.unknown_templates: set[str] = {"no-such-template"}  # create answers 404
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def by_meta(self, key: str, value: str) -> FakeSandbox | None:
        return next((s for s in self.sandboxes.values() if s.metadata.get(key) == value), None)

    # -- the REST API ----------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("x-api-key") == self.api_key

    def _sandbox(self, request: Request) -> FakeSandbox | None:
        sbx = self.sandboxes.get(request.path_params["id"])
        return sbx if sbx is not None and sbx.state != "killed" else None

    async def create(self, request: Request) -> Response:
        if not self._authorized(request):
            return api_error(401, "Invalid API key")
        body = await request.json()
        if body["templateID"] in self.unknown_templates:
            return api_error(404, f"template '{body['templateID']}' not found")
        sid = "fk" + secrets.token_hex(8)
        root = self.root / sid
        (root / "workspace").mkdir(parents=True)
        (root / "fs").mkdir()
        sbx = FakeSandbox(
            id=sid,
            template=body["templateID"],
            metadata=dict(body.get("metadata") or {}),
            envs=dict(body.get("envVars") or {}),
            root=root,
            token=secrets.token_hex(16),
            timeout=int(body.get("timeout", 300)),
            auto_pause=bool(body.get("autoPause", False)),
        )
        if body.get("allow_internet_access") is not None:
            sbx.network.append({"allow_internet_access": body["allow_internet_access"]})
        self.sandboxes[sid] = sbx
        return JSONResponse(sbx.created(), status_code=201)

    async def list(self, request: Request) -> Response:
        if not self._authorized(request):
            return api_error(401, "Invalid API key")
        wanted = dict(urllib.parse.parse_qsl(request.query_params.get("metadata", "")))
        wanted = {urllib.parse.unquote(k): urllib.parse.unquote(v) for k, v in wanted.items()}
        states = request.query_params.get("state", "running,paused").split(",")
        found = [
            s.listed()
            for s in self.sandboxes.values()
            if s.state in states and all(s.metadata.get(k) == v for k, v in wanted.items())
        ]
        return JSONResponse(found)

    async def connect(self, request: Request) -> Response:
        if not self._authorized(request):
            return api_error(401, "Invalid API key")
        sbx = self._sandbox(request)
        if sbx is None:
            return api_error(404, f"sandbox {request.path_params['id']} not found")
        body = await request.json()
        sbx.timeout = max(sbx.timeout, int(body.get("timeout", 0)))
        if sbx.state == "paused":
            sbx.state = "running"
            sbx.resumes += 1
            self._signal_all(sbx, signal.SIGCONT)
            return JSONResponse(sbx.created(), status_code=201)
        return JSONResponse(sbx.created(), status_code=200)

    async def pause(self, request: Request) -> Response:
        if not self._authorized(request):
            return api_error(401, "Invalid API key")
        sbx = self._sandbox(request)
        if sbx is None:
            return api_error(404, "sandbox not found")
        if sbx.state == "paused":
            return api_error(409, "sandbox is already paused")
        sbx.state = "paused"
        sbx.pauses += 1
        self._signal_all(sbx, signal.SIGSTOP)
        return Response(status_code=204)

    async def kill(self, request: Request) -> Response:
        if not self._authorized(request):
            return api_error(401, "Invalid API key")
        sbx = self._sandbox(request)
        if sbx is None:
            return api_error(404, "sandbox not found")
        sbx.state = "killed"
        self._signal_all(sbx, signal.SIGKILL)
        shutil.rmtree(sbx.root, ignore_errors=True)
        return Response(status_code=204)

    async def set_timeout(self, request: Request) -> Response:
        sbx = self._sandbox(request)
        if not self._authorized(request) or sbx is None:
            return api_error(404, "sandbox not found")
        sbx.timeout = int((await request.json())["timeout"])
        return Response(status_code=204)

    async def network(self, request: Request) -> Response:
        sbx = self._sandbox(request)
        if not self._authorized(request) or sbx is None:
            return api_error(404, "sandbox not found")
        sbx.network.append(await request.json())
        return Response(status_code=204)

    # -- the server ------------------------------------------------------------------

    def app(self) -> Any:
        routes = [
            Route("/v2/sandboxes", self.create, methods=["POST"]),
            Route("/v2/sandboxes", self.list, methods=["GET"]),
            Route("/v2/sandboxes/{id}/connect", self.connect, methods=["POST"]),
            Route("/sandboxes/{id}/pause", self.pause, methods=["POST"]),
            Route("/sandboxes/{id}", self.kill, methods=["DELETE"]),
            Route("/sandboxes/{id}/timeout", self.set_timeout, methods=["POST"]),
            Route("/sandboxes/{id}/network", self.network, methods=["PUT"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/process.Process/Start", self.process_start, methods=["POST"]),
            Route("/process.Process/SendSignal", self.send_signal, methods=["POST"]),
            Route("/filesystem.Filesystem/{method}", self.fs_call, methods=["POST"]),
            Route("/files", self.files_get, methods=["GET"]),
            Route("/files", self.files_post, methods=["POST"]),
        ]
        inner = Starlette(routes=routes)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.requests.append((scope["method"], scope["path"]))
            await inner(scope, receive, send)

        return app

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="error")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        while not self._server.started:
            threading.Event().wait(0.02)

    def stop(self) -> None:
        for sbx in self.sandboxes.values():
            self._signal_all(sbx, signal.SIGKILL)
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)
