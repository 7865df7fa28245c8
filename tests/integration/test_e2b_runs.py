"""A run on an E2B template through the real stack (API, Temporal, worker), the worker's
e2b SDK pointed at the fake E2B by its settings."""

from __future__ import annotations

from pathlib import Path

import httpx

from runyard.db.engine import Database
from runyard.sandbox.e2b import META_RUN
from tests.conftest import TERMINAL, Keys, async_db_url, launch_stack, script, stack_env, wait_for
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.e2b_server import FakeE2B
from tests.integration.git_support import make_remote
from tests.integration.test_events import full_log


async def test_a_run_on_an_e2b_template(
    tmp_path: Path, temporal_server: str, fake_anthropic: FakeAnthropic
) -> None:
    fake = FakeE2B(tmp_path / "e2b")
    fake.start()
    data = tmp_path / "data"
    env = stack_env(
        data,
        temporal_server,
        fake_anthropic.base_url,
        E2B_API_KEY=fake.api_key,
        RUNYARD_E2B_API_URL=fake.url,
        RUNYARD_E2B_SANDBOX_URL=fake.url,
    )
    stack = launch_stack(data, env)
    try:
        db = Database(async_db_url(env))
        key = await Keys(db).make("e2b-runs")
        await db.dispose()
        remote = make_remote(tmp_path / "remotes", "acme/calc")
        async with httpx.AsyncClient(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as c:
            created = await c.post(
                "/v1/templates",
                json={"slug": "cloud", "provider": "e2b", "image": "runyard-agent"},
            )
            assert created.status_code == 201, created.text
            prompt = script(
                {"tool": "bash", "input": {"command": "cat calc.py; echo $FOO; env"}},
                {"tool": "write_file", "input": {"path": "notes/a.txt", "content": "hi"}},
                {"tool": "read_file", "input": {"path": "notes/a.txt"}},
                {"tool": "list_files", "input": {}},
                {"text": "done on e2b"},
            )
            resp = await c.post(
                "/v1/runs",
                json={
                    "prompt": prompt,
                    "model": "scripted",
                    "template": "cloud",
                    "repo": str(remote),
                    "env": {"FOO": "from-the-run"},
                    "start": True,
                },
            )
            assert resp.status_code == 201, resp.text
            run_id = resp.json()["id"]
            done = await wait_for(c, run_id, TERMINAL, timeout=120)
            assert done["status"] == "completed", done
            assert done["sandbox"]["provider"] == "e2b"
            results = [e["data"] for e in await full_log(c, run_id) if e["type"] == "tool.result"]
        bash = results[0]["output"]
        assert "def mul(a, b):" in bash and "from-the-run" in bash, bash
        assert fake.api_key not in bash and "E2B_" not in bash, bash  # no secret inside
        assert results[2]["output"] == "hi"
        assert results[3]["output"].splitlines() == ["calc.py", "notes/a.txt"]
        made = fake.by_meta(META_RUN, run_id)
        assert made is not None
        assert made.template == "runyard-agent"
        assert fake.api_key not in made.envs.values()
        assert made.state == "killed"  # destroyed when the run ended
    finally:
        stack.stop()
        fake.stop()
