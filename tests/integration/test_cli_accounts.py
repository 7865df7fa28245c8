"""``runyard keys`` and ``runyard credits`` against a data dir, as an operator uses them.

One real subprocess shows what an operator sees on a wrong data dir; the rest drive the
same typer app in this process (a subprocess costs seconds of imports each).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from api.app import create_app
from cli import app as cli
from runyard.devserver import free_port
from runyard.settings import Settings
from tests.stack import ROOT


def test_no_store_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNYARD_")}
    data = tmp_path / "nothing-here"
    out = subprocess.run(
        [sys.executable, "-m", "cli", "keys", "list", "--org", "o", "--data-dir", data],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and out.stderr.startswith("no Runyard store at "), out.stderr
    assert out.stderr.count("\n") == 1 and out.stdout == ""
    assert not data.exists()


def test_keys_and_credits_on_a_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("RUNYARD_")]:
        monkeypatch.delenv(name)
    # --data-dir wins over RUNYARD_DATA_DIR.
    monkeypatch.setenv("RUNYARD_DATA_DIR", str(tmp_path / "elsewhere"))
    data = str(tmp_path / "store")

    def runyard(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, [*args, "--data-dir", data])
        return result.exit_code, result.stdout, result.stderr

    code, _, err = runyard("keys", "create", "--org", "ops")
    assert code == 1 and "no Runyard store" in err and not Path(data).exists()
    code, out, err = runyard("keys", "create", "--org", "ops", "--name", "ci", "--init")
    assert code == 0, err
    key = out.strip()
    assert key.startswith("ry_live_") and out.count("\n") == 1
    assert (Path(data) / "runyard.db").is_file() and not (tmp_path / "elsewhere").exists()

    code, out, err = runyard("keys", "list", "--org", "ops")
    assert code == 0, err
    row = out.splitlines()[1].split("\t")
    assert row[1:4] == ["ci", key[:12], "runs:read,runs:write"] and key not in out
    assert runyard("keys", "list", "--org", "nobody")[0] == 1

    code, out, err = runyard("credits", "grant", "--org", "ops", "250")
    assert (code, out.strip()) == (0, "250"), err
    assert runyard("credits", "grant", "--org", "ops", "50")[1].strip() == "300"
    code, _, err = runyard("credits", "grant", "--org", "nobody", "5")
    assert code == 1 and "no organization" in err

    async def api_sees(revoked: bool) -> None:
        # The API reading that data dir: the key, the credits.
        settings = Settings(data_dir=Path(data), temporal_address=f"127.0.0.1:{free_port()}")
        app = create_app(settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://api",
                headers={"Authorization": f"Bearer {key}"},
            ) as api,
        ):
            if revoked:
                assert (await api.get("/v1/usage")).status_code == 401
            else:
                assert (await api.get("/v1/usage")).json()["creditsBalance"] == 300

    asyncio.run(api_sees(revoked=False))
    assert runyard("keys", "revoke", row[0])[0] == 0
    code, _, err = runyard("keys", "revoke", row[0])
    assert code == 1 and "no live API key" in err
    asyncio.run(api_sees(revoked=True))
