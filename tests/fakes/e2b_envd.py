"""envd, the daemon inside each fake E2B sandbox (see ``e2b_server.py``): processes and
files, and the sandbox's state shared with the REST side."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import stat
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

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


def api_error(status: int, message: str) -> JSONResponse:
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


class FakeEnvd:
    """envd's handlers; ``FakeE2B`` adds the REST API and the server."""

    sandboxes: dict[str, FakeSandbox]
    downloads: list[tuple[str, int, bool]]
    _tasks: set[asyncio.Task[None]]

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

    def _envd(self, request: Request) -> FakeSandbox | Response:
        sbx = self.sandboxes.get(request.headers.get("e2b-sandbox-id", ""))
        if sbx is None or sbx.state != "running":
            return JSONResponse(
                {"message": "The sandbox was not found", "code": 502}, status_code=502
            )
        if request.headers.get("x-access-token") != sbx.token:
            return api_error(401, "invalid access token")
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
            return api_error(404, f"path '{path}' does not exist")
        if not stat.S_ISREG(st.st_mode):
            return api_error(400, f"path '{path}' is not a regular file")

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
            return api_error(400, "this fake takes application/octet-stream uploads only")
        path = request.query_params.get("path", "")
        host = sbx.host_path(path)
        host.parent.mkdir(parents=True, exist_ok=True)
        with host.open("wb") as f:
            async for chunk in request.stream():
                f.write(chunk)
        return JSONResponse([{"name": host.name, "type": "file", "path": path}])
