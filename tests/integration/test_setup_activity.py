"""The ``setup_sandbox`` activity against a real store and a real local sandbox: a retry
after success never runs the script again; a failure is SANDBOX_SETUP_FAILED, not
retried; and how its output is batched and capped (``SetupOutput``)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlmodel import col, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.sandbox_setup import DONE_KEY, SandboxSetupActivities, SetupOutput
from runyard.db.engine import Database, migrate
from runyard.db.tables import Run, RunEvent, Template
from runyard.sandbox.base import SandboxProvider, SandboxSpec
from runyard.sandbox.local import LocalSandboxProvider
from runyard.settings import Settings
from runyard.store.orgs import ensure_org
from workflows.payloads import SandboxCall, SandboxRef

BWRAP = shutil.which("bwrap")


@dataclass
class World:
    db: Database
    provider: LocalSandboxProvider
    activities: SandboxSetupActivities

    async def run_with(self, name: str, script: str) -> SandboxCall:
        """A pending run of a template with ``script``, and its sandbox."""
        async with self.db.write() as s:
            org = await ensure_org(s, "org-setup")
            s.add(
                Template(id=f"tpl_{name}", org_id=org.id, slug=name, name=name, setup_script=script)
            )
            s.add(
                Run(
                    id=f"run_{name}",
                    org_id=org.id,
                    status="pending",
                    prompt="p",
                    model="scripted",
                    template=name,
                    workflow_id=f"run_{name}",
                )
            )
        await self.provider.create(f"sbx_{name}", SandboxSpec(size="s"))
        return SandboxCall(run_id=f"run_{name}", sandbox=SandboxRef(sandbox_id=f"sbx_{name}"))

    async def events(self, run_id: str) -> list[RunEvent]:
        async with self.db.session() as s:
            rows = await s.execute(
                select(RunEvent).where(col(RunEvent.run_id) == run_id).order_by(col(RunEvent.seq))
            )
            return list(rows.scalars())


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    if BWRAP is None:
        pytest.skip("bubblewrap is not installed")
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    db = Database(url)
    provider = LocalSandboxProvider(tmp_path / "sbx", bwrap=BWRAP)
    providers: dict[str, SandboxProvider] = {"local": provider}
    yield World(db, provider, SandboxSetupActivities(db, Settings(data_dir=tmp_path), providers))
    for d in list(provider.root.glob("sbx_*")):
        await provider.destroy(d.name)
    await db.dispose()


async def test_a_retry_after_success_does_not_run_the_script_again(world: World) -> None:
    call = await world.run_with("once", "echo ran >> /workspace/count; echo set up")
    env = ActivityEnvironment()
    await env.run(world.activities.setup_sandbox, call)
    await env.run(world.activities.setup_sandbox, call)  # a retry, e.g. after a lost reply
    sandbox = await world.provider.get("sbx_once")
    assert (await sandbox.exec("cat count", timeout=10)).stdout == "ran\n"
    events = await world.events("run_once")
    assert [e.key for e in events] == [DONE_KEY]
    assert events[0].data == {
        "stream": "stdout",
        "output": "set up\n",
        "exitCode": 0,
        "timedOut": False,
    }


async def test_a_failing_script_is_not_retried(world: World) -> None:
    call = await world.run_with("fails", "echo trying; echo 'no disk' >&2; exit 3")
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(world.activities.setup_sandbox, call)
    assert err.value.type == "SANDBOX_SETUP_FAILED" and err.value.non_retryable
    assert "exited 3" in str(err.value) and "no disk" in str(err.value)
    events = await world.events("run_fails")
    assert DONE_KEY not in [e.key for e in events]
    assert events[-1].data["exitCode"] == 3
    outputs = {e.data["stream"]: e.data["output"] for e in events}
    assert outputs == {"stdout": "trying\n", "stderr": "no disk\n"}


async def test_a_timed_out_script_fails_the_setup(world: World, tmp_path: Path) -> None:
    world.activities.settings = Settings(data_dir=tmp_path, setup_timeout_seconds=1)
    call = await world.run_with("slow", "echo started; sleep 30")
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(world.activities.setup_sandbox, call)
    assert err.value.type == "SANDBOX_SETUP_FAILED" and "timed out after 1 s" in str(err.value)
    last = (await world.events("run_slow"))[-1].data
    assert last["timedOut"] is True and last["exitCode"] == 124


def test_output_is_batched_by_whole_lines_per_stream() -> None:
    out = SetupOutput(cap=1000)
    out.add("stdout", "one\ntw")
    out.add("stderr", "err\n")
    assert out.take(final=False) == [
        {"stream": "stderr", "output": "err\n"},
        {"stream": "stdout", "output": "one\n"},
    ]
    out.add("stdout", "o")
    assert out.take(final=False) == []  # no whole line yet
    assert out.take(final=True) == [{"stream": "stdout", "output": "two"}]


def test_output_over_the_cap_is_left_out_and_counted() -> None:
    out = SetupOutput(cap=10)
    out.add("stdout", "12345\n")
    out.add("stdout", "67890\nabc\n")
    assert out.take(final=True) == [{"stream": "stdout", "output": "12345\n6789"}]
    assert out.left_out == 6 and out.kept == 10
    out.add("stdout", "more")
    assert out.take(final=True) == [] and out.left_out == 10
