"""The command line against a running stack: keys create, run --follow."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import Keys
from tests.stack import ROOT, Stack


def runyard(stack: Stack, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**stack.env, "RUNYARD_API_URL": stack.api_url}
    if key:
        env["RUNYARD_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_keys_create_prints_only_the_key(stack: Stack) -> None:
    out = runyard(stack, "keys", "create", "--org", "cli-org", "--scopes", "runs:read,admin")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 1 and out.stdout.startswith("ry_live_")
    bad = runyard(stack, "keys", "create", "--org", "cli-org", "--scopes", "root")
    assert bad.returncode == 2 and "unknown scope" in bad.stderr


async def test_run_follow(stack: Stack, keys: Keys) -> None:
    key = await keys.make("cli-follow")
    prompt = "#!scripted\n" + "\n".join(
        json.dumps(x)
        for x in [
            {"tool": "bash", "input": {"command": "echo folded-result"}},
            {"text": "The final answer from the CLI run."},
        ]
    )
    out = runyard(stack, "run", prompt, "--model", "scripted", "--follow", key=key)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("run_") and lines[-1] == "The final answer from the CLI run."
    assert "bash" in out.stderr and "folded-result" in out.stderr and "completed" in out.stderr
    failing = runyard(
        stack, "run", '#!scripted\n{"fail": "nope"}', "--model", "scripted", "--follow", key=key
    )
    assert (
        failing.returncode == 1
        and "MODEL_ERROR" not in failing.stdout
        and "failed" in failing.stderr
    )
    missing = runyard(stack, "run", "x", "--model", "sonnet-9000", key=key)
    assert missing.returncode == 1 and "VALIDATION_FAILED" in missing.stderr
