"""The runner's frames: requests are marshal (from the trusted worker), answers JSON as
``json.dumps(..., ensure_ascii=False)`` would write them; and its bytecode's fallback."""

from __future__ import annotations

import json
import marshal
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from runyard.sandbox.runner import HEADER, encode, request_frame
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
