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
test fake, not isolation). File paths under /workspace map to that directory, other
absolute paths to a private directory of the sandbox. A pause stops (SIGSTOP) the
sandbox's running commands and a resume continues them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import stat
import struct
import threading
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from runyard.devserver import free_port

ENVD_VERSION = "0.6.7"
WORKSPACE = "/workspace"
MARKER = "FAKESBX_ID"  # in every command's environment: which fake sandbox it belongs to


@dataclass
class FakeSandbox:
    id: str
    template: str
    metadata: dict[str, str]
    envs: dict[str, str]
    root: Path
    token: str
    timeout: int
    state: str = "running"
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    network: list[dict[str, Any]] = field(default_factory=list)
    procs: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)
    pauses: int = 0
    resumes: int = 0
    auto_pause: bool = False

    def host_path(self, path: str) -> Path:
        p = path if path.startswith("/") else "/home/user/" + path
        p = os.path.normpath(p)
        if p == WORKSPACE or p.startswith(WORKSPACE + "/"):
            return self.root / "workspace" / p.removeprefix(WORKSPACE).lstrip("/")
        return self.root / "fs" / p.lstrip("/")

    def listed(self) -> dict[str, Any]:
        end = self.started_at + timedelta(seconds=self.timeout)
        return {
            "templateID": self.template,
            "sandboxID": self.id,
            "clientID": "fake",
            "startedAt": self.started_at.isoformat(),
            "endAt": end.isoformat(),
            "cpuCount": 2,
            "memoryMB": 512,
            "diskSizeMB": 1024,
            "state": self.state,
            "envdVersion": ENVD_VERSION,
            "metadata": self.metadata,
        }

    def created(self) -> dict[str, Any]:
        return {
            "templateID": self.template,
            "sandboxID": self.id,
            "clientID": "fake",
            "envdVersion": ENVD_VERSION,
            "envdAccessToken": self.token,
        }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status)


def _rpc_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _envelope(message: dict[str, Any], flags: int = 0) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack(">BI", flags, len(data)) + data


def _entry(sbx_path: str, host: Path) -> dict[str, Any]:
    st = os.lstat(host)
    is_link = stat.S_ISLNK(st.st_mode)
    if is_link:
        with contextlib.suppress(OSError):
            st = os.stat(host)
    kind = (
        "FILE_TYPE_FILE"
        if stat.S_ISREG(st.st_mode)
        else "FILE_TYPE_DIRECTORY"
        if stat.S_ISDIR(st.st_mode)
        else "FILE_TYPE_UNSPECIFIED"
    )
    entry: dict[str, Any] = {
        "name": os.path.basename(sbx_path.rstrip("/")) or "/",
        "type": kind,
        "path": sbx_path,
        "size": str(st.st_size),
        "mode": stat.S_IMODE(st.st_mode),
        "permissions": stat.filemode(st.st_mode),
        "owner": "root",
        "group": "root",
        "modifiedTime": datetime.fromtimestamp(st.st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if is_link:
        entry["isSymlink"] = True
        entry["symlinkTarget"] = os.readlink(host)
    return entry


def _bwrap_argv(workspace: Path, cwd: str) -> list[str]:
    argv = ["bwrap"]
    for name in sorted(os.listdir("/")):
        p = "/" + name
        if name in ("proc", "dev", "workspace"):
            continue
        if os.path.islink(p):
            argv += ["--symlink", os.readlink(p), p]
        elif os.path.isdir(p):
            argv += ["--bind", p, p]
    return [
        *argv,
        "--proc",
        "/proc",
        "--dev-bind",
        "/dev",
        "/dev",
        "--bind",
        str(workspace),
        WORKSPACE,
        "--chdir",
        cwd,
        "--die-with-parent",
    ]


class FakeE2B:
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
            return _error(401, "Invalid API key")
        body = await request.json()
        if body["templateID"] in self.unknown_templates:
            return _error(404, f"template '{body['templateID']}' not found")
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
            return _error(401, "Invalid API key")
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
            return _error(401, "Invalid API key")
        sbx = self._sandbox(request)
        if sbx is None:
            return _error(404, f"sandbox {request.path_params['id']} not found")
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
            return _error(401, "Invalid API key")
        sbx = self._sandbox(request)
        if sbx is None:
            return _error(404, "sandbox not found")
        if sbx.state == "paused":
            return _error(409, "sandbox is already paused")
        sbx.state = "paused"
        sbx.pauses += 1
        self._signal_all(sbx, signal.SIGSTOP)
        return Response(status_code=204)

    async def kill(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, "Invalid API key")
        sbx = self._sandbox(request)
        if sbx is None:
            return _error(404, "sandbox not found")
        sbx.state = "killed"
        self._signal_all(sbx, signal.SIGKILL)
        shutil.rmtree(sbx.root, ignore_errors=True)
        return Response(status_code=204)

    async def set_timeout(self, request: Request) -> Response:
        sbx = self._sandbox(request)
        if not self._authorized(request) or sbx is None:
            return _error(404, "sandbox not found")
        sbx.timeout = int((await request.json())["timeout"])
        return Response(status_code=204)

    async def network(self, request: Request) -> Response:
        sbx = self._sandbox(request)
        if not self._authorized(request) or sbx is None:
            return _error(404, "sandbox not found")
        sbx.network.append(await request.json())
        return Response(status_code=204)

    def _signal_all(self, sbx: FakeSandbox, sig: int) -> None:
        """Signal every process of the sandbox, also those a command moved to a session
        of its own: all carry the sandbox's marker in their environment."""
        marker = f"{MARKER}={sbx.id}".encode()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if marker in env:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(name), sig)

    # -- envd ------------------------------------------------------------------------

    def _envd(self, request: Request) -> FakeSandbox | Response:
        sbx = self.sandboxes.get(request.headers.get("e2b-sandbox-id", ""))
        if sbx is None or sbx.state != "running":
            return JSONResponse(
                {"message": "The sandbox was not found", "code": 502}, status_code=502
            )
        if request.headers.get("x-access-token") != sbx.token:
            return _error(401, "invalid access token")
        return sbx

    async def health(self, request: Request) -> Response:
        found = self._envd(request)
        return found if isinstance(found, Response) else Response(status_code=204)

    async def process_start(self, request: Request) -> Response:
        sbx = self._envd(request)
        if isinstance(sbx, Response):
            return sbx
        raw = await request.body()
        (length,) = struct.unpack(">I", raw[1:5])
        req = json.loads(raw[5 : 5 + length])
        proc_cfg = req["process"]
        cwd = proc_cfg.get("cwd") or "/"
        timeout_ms = int(request.headers.get("connect-timeout-ms", "0"))
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            **sbx.envs,
            **(proc_cfg.get("envs") or {}),
            MARKER: sbx.id,
        }
        info_r, info_w = os.pipe()
        argv = [
            *_bwrap_argv(sbx.root / "workspace", cwd),
            "--info-fd",
            str(info_w),
            proc_cfg["cmd"],
            *proc_cfg.get("args", []),
        ]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
                pass_fds=(info_w,),
            )
        finally:
            os.close(info_w)
        with os.fdopen(info_r, "rb") as info:  # bubblewrap says the command's own pid
            pid = int(json.loads(await asyncio.to_thread(info.read))["child-pid"])
        sbx.procs[pid] = proc
        # As envd does: the command outlives its stream (a client that goes away does not
        # kill it); only the request's Connect-Timeout-Ms does.
        queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        listening = {"on": True}

        async def pump(name: str, stream: asyncio.StreamReader | None) -> None:
            assert stream is not None
            while chunk := await stream.read(65536):
                if listening["on"]:
                    await queue.put((name, chunk))
            await queue.put(None)

        async def supervise() -> None:
            pumps = [pump("stdout", proc.stdout), pump("stderr", proc.stderr)]
            try:
                await asyncio.wait_for(asyncio.gather(*pumps, proc.wait()), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                await proc.wait()
            finally:
                sbx.procs.pop(pid, None)

        timeout = timeout_ms / 1000 if timeout_ms else None
        task = asyncio.create_task(supervise())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return StreamingResponse(
            self._events(proc, pid, queue, listening, timeout),
            media_type="application/connect+json",
        )

    async def _events(
        self,
        proc: asyncio.subprocess.Process,
        pid: int,
        queue: asyncio.Queue[tuple[str, bytes] | None],
        listening: dict[str, bool],
        timeout: float | None,
    ) -> AsyncIterator[bytes]:
        yield _envelope({"event": {"start": {"pid": pid}}})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        open_streams = 2
        try:
            while open_streams:
                wait = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    item = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    yield _envelope(
                        {"error": {"code": "deadline_exceeded", "message": "timed out"}}, 2
                    )
                    return
                if item is None:
                    open_streams -= 1
                    continue
                name, chunk = item
                data = base64.b64encode(chunk).decode()
                yield _envelope({"event": {"data": {name: data}}})
            code = await proc.wait()
            end: dict[str, Any] = {
                "exitCode": code if code >= 0 else 128 - code,
                "exited": code >= 0,
                "status": f"exit status {code}" if code >= 0 else f"signal: {-code}",
            }
            yield _envelope({"event": {"end": end}})
            yield _envelope({}, 2)
        finally:
            listening["on"] = False

    async def send_signal(self, request: Request) -> Response:
        sbx = self._envd(request)
        if isinstance(sbx, Response):
            return sbx
        body = await request.json()
        pid = int(body["process"]["pid"])
        proc = sbx.procs.get(pid)
        if proc is None:
            return _rpc_error(404, "not_found", f"process {pid} not found")
        sig = signal.SIGKILL if body.get("signal") == "SIGNAL_SIGKILL" else signal.SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        return JSONResponse({})

    async def fs_call(self, request: Request) -> Response:
        sbx = self._envd(request)
        if isinstance(sbx, Response):
            return sbx
        method = request.path_params["method"]
        body = await request.json()
        path = body.get("path", "")
        host = sbx.host_path(path)
        try:
            if method == "Stat":
                return JSONResponse({"entry": _entry(path, host)})
            if method == "ListDir":
                entries = [
                    _entry(f"{path.rstrip('/')}/{name}", host / name)
                    for name in sorted(os.listdir(host))
                ]
                return JSONResponse({"entries": entries})
            if method == "MakeDir":
                if host.exists():
                    return _rpc_error(409, "already_exists", f"{path} exists")
                host.mkdir(parents=True)
                return JSONResponse({"entry": _entry(path, host)})
            if method == "Remove":
                if host.is_dir() and not host.is_symlink():
                    shutil.rmtree(host)
                else:
                    host.unlink()
                return JSONResponse({})
        except FileNotFoundError:
            return _rpc_error(404, "not_found", f"path not found: {path}")
        except OSError as exc:
            return _rpc_error(500, "internal", str(exc))
        return _rpc_error(501, "unimplemented", f"filesystem.Filesystem/{method}")

    async def files_get(self, request: Request) -> Response:
        sbx = self._envd(request)
        if isinstance(sbx, Response):
            return sbx
        path = request.query_params.get("path", "")
        host = sbx.host_path(path)
        try:
            st = os.stat(host)
        except FileNotFoundError:
            return _error(404, f"path '{path}' does not exist")
        if not stat.S_ISREG(st.st_mode):
            return _error(400, f"path '{path}' is not a regular file")

        async def chunks() -> AsyncIterator[bytes]:
            sent, whole = 0, False
            try:
                with host.open("rb") as f:
                    while chunk := f.read(65536):
                        if await request.is_disconnected():
                            return  # a real server stops when the client goes
                        sent += len(chunk)
                        yield chunk
                whole = True
            finally:
                self.downloads.append((path, sent, whole))

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    async def files_post(self, request: Request) -> Response:
        sbx = self._envd(request)
        if isinstance(sbx, Response):
            return sbx
        if not request.headers.get("content-type", "").startswith("application/octet-stream"):
            return _error(400, "this fake takes application/octet-stream uploads only")
        path = request.query_params.get("path", "")
        host = sbx.host_path(path)
        host.parent.mkdir(parents=True, exist_ok=True)
        with host.open("wb") as f:
            async for chunk in request.stream():
                f.write(chunk)
        return JSONResponse([{"name": host.name, "type": "file", "path": path}])

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
