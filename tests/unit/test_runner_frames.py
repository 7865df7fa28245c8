"""The runner's frames: requests are marshal (from the trusted worker), answers JSON as
``json.dumps(..., ensure_ascii=False)`` would write them; its bytecode's fallback; what a
close cuts off."""

from __future__ import annotations

import asyncio
import json
import marshal
import sys
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from runyard.sandbox.client import RunnerClient, RunnerGone
from runyard.sandbox.runner import HEADER, READY_FRAME, encode, request_frame
from runyard.sandbox.runner_code import RunnerBytecode
from runyard.sandbox.runner_procs import dumps

ANSWERS: list[Any] = [
    {"id": 7, "ok": {"exit_code": -9, "stdout": 'a\nb\t"q" \\ \x00\x1f\x7f é 𝄞', "x": None}},
    {"id": 1, "error": {"type": "PermissionError", "message": "../x: outside the workspace"}},
    {"files": ["a.txt", "dir/\u2028b", "c\x01"], "timed_out": False, "cancelled": True},
    {"n": 2**70, "f": 0.1, "nan": float("nan"), "inf": float("inf"), "m": -float("inf")},
    {"nested": [[], {}, [1, [2, {"k": "v"}]]], "": ""},
]


@pytest.mark.parametrize("obj", ANSWERS)
def test_answers_are_written_as_json_dumps_writes_them(obj: Any) -> None:
    assert dumps(obj) == json.dumps(obj, ensure_ascii=False)
    frame = encode(obj)
    (size,) = HEADER.unpack(frame[: HEADER.size])
    assert json.loads(frame[HEADER.size :]) == json.loads(json.dumps(obj)) or obj is ANSWERS[3]
    assert size == len(frame) - HEADER.size


def test_what_json_cannot_hold_is_refused() -> None:
    with pytest.raises(TypeError):
        dumps({"b": b"bytes"})


def test_requests_are_marshal_frames() -> None:
    req = {"id": 9, "op": "write", "path": "a\udcff.txt", "data": "QUJD", "timeout": 1.5}
    frame = request_frame(req)
    (size,) = HEADER.unpack(frame[: HEADER.size])
    assert size == len(frame) - HEADER.size
    assert marshal.loads(frame[HEADER.size :]) == req


async def test_a_runner_that_cannot_be_compiled_runs_from_source(tmp_path: Path) -> None:
    bytecode = RunnerBytecode(tmp_path / ".runner", str(tmp_path / "no-python"))
    with capture_logs() as logs:
        assert await bytecode.directory() is None
        assert await bytecode.directory() is None  # tried once, said once
    assert [e["event"] for e in logs] == ["sandbox.runner_not_precompiled"]


# A runner that answers its one request only once its stdin has ended, then exits.
_LATE_ANSWER = """
import json, marshal, os, struct, sys
os.write(1, {ready!r})
(size,) = struct.unpack(">I", sys.stdin.buffer.read(4))
req = marshal.loads(sys.stdin.buffer.read(size))
sys.stdin.buffer.read()
body = json.dumps({{"id": req["id"], "ok": {{"exit_code": -9}}}}).encode()
os.write(1, struct.pack(">I", len(body)) + body)
"""


async def test_a_call_cut_off_by_close_fails_though_the_runner_answers_it() -> None:
    """close() stops the runner the way a kill did: the call in flight fails (the
    sandbox is being destroyed), whatever the runner answers while it ends."""
    runner = await RunnerClient.start(
        [sys.executable, "-I", "-c", _LATE_ANSWER.format(ready=READY_FRAME)]
    )
    call = asyncio.create_task(runner.call("exec", {"command": "sleep 60"}, deadline=10))
    await asyncio.sleep(0.1)
    await runner.close()
    with pytest.raises(RunnerGone):
        await call
    assert runner.proc.returncode == 0  # it exited by itself, after its answer
