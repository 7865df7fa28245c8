"""The E2B provider against a fake E2B that speaks E2B's wire format: the e2b SDK's real
code runs (REST API, envd's Connect RPC and /files), only the cloud is local."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from e2b import AsyncSandbox

from runyard.errors import RepositoryNotFound
from runyard.sandbox.base import SandboxError, SandboxSpec, SandboxUnavailable, ToolError
from runyard.sandbox.capped import read_capped
from runyard.sandbox.e2b import META_ID, META_RUN, READY, E2BSandboxProvider
from runyard.sandbox.e2b_sandbox import E2BSandbox
from runyard.sandbox.local_sandbox import OUTPUT_CAP
from tests.conftest import poll_until
from tests.fakes.e2b_envd import FakeSandbox
from tests.fakes.e2b_server import FakeE2B
from tests.integration.git_support import make_remote


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeE2B]:
    server = FakeE2B(tmp_path_factory.mktemp("e2b"))
    server.start()
    yield server
    server.stop()


def provider_for(fake: FakeE2B, api_key: str | None = None) -> E2BSandboxProvider:
    return E2BSandboxProvider(
        api_key=api_key or fake.api_key, api_url=fake.url, sandbox_url=fake.url
    )


@pytest.fixture
async def sandbox(fake: FakeE2B, request: pytest.FixtureRequest) -> AsyncIterator[E2BSandbox]:
    provider = provider_for(fake)
    sid = "sbx_" + request.node.name.replace("_", "")[-20:]
    sbx = await provider.create(sid, SandboxSpec(env={"GREETING": "hello"}))
    yield sbx
    await provider.destroy(sid)


def fake_of(fake: FakeE2B, sandbox: E2BSandbox) -> FakeSandbox:
    return fake.sandboxes[sandbox.e2b_id]


def running(marker: str) -> bool:
    """Whether a process with ``marker`` in its command line runs on this machine (the
    fake runs sandbox commands here)."""
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, check=False)
    return found.returncode == 0


async def test_create_from_the_image_with_env_metadata_clone_and_no_network(
    fake: FakeE2B, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path, "acme/calc")
    provider = provider_for(fake)
    spec = SandboxSpec(repo_url=str(remote), env={"FOO": "bar"}, image="my-template")
    sbx = await provider.create("sbx_create1", spec)
    made = fake_of(fake, sbx)
    assert made.template == "my-template"
    assert made.metadata == {META_ID: "sbx_create1", META_RUN: "run_create1"}
    assert made.envs == {"FOO": "bar"}  # the run's env only: no E2B key, no worker env
    assert made.auto_pause  # idle past its timeout, it is paused, not killed
    # Internet on for the clone, then off: the settings allow no network.
    assert made.network[-1] == {"allow_internet_access": False}
    res = await sbx.exec("echo $FOO; git log --oneline | wc -l; cat calc.py", timeout=30)
    assert res.exit_code == 0, res
    assert res.stdout.splitlines()[:3] == ["bar", "1", "def mul(a, b):"]

    # A retried create finds the same sandbox, ready, and makes no other.
    creates = fake.requests.count(("POST", "/v2/sandboxes"))
    again = await provider.create("sbx_create1", spec)
    assert again.e2b_id == sbx.e2b_id
    assert fake.requests.count(("POST", "/v2/sandboxes")) == creates

    # One a provision left half made (no ready mark) is killed and made again.
    made.host_path(READY).unlink()
    remade = await provider.create("sbx_create1", spec)
    assert remade.e2b_id != sbx.e2b_id and made.state == "killed"
    assert (await remade.read_file("calc.py", max_bytes=100)).data.startswith(b"def mul")
    await provider.destroy("sbx_create1")


async def test_a_missing_repository_fails_and_leaves_nothing_running(
    fake: FakeE2B, tmp_path: Path
) -> None:
    provider = provider_for(fake)
    with pytest.raises(RepositoryNotFound):
        await provider.create("sbx_norepo", SandboxSpec(repo_url=str(tmp_path / "nope.git")))
    made = fake.by_meta(META_ID, "sbx_norepo")
    assert made is not None and made.state == "killed"


async def test_a_wrong_key_or_template_is_permanent(fake: FakeE2B) -> None:
    with pytest.raises(SandboxUnavailable, match="API key"):
        await provider_for(fake, api_key="e2b_wrong").create("sbx_badkey", SandboxSpec())
    with pytest.raises(SandboxUnavailable, match="no-such-template"):
        await provider_for(fake).create("sbx_badtpl", SandboxSpec(image="no-such-template"))


async def test_exec_streams_output_and_keeps_the_exit_code(sandbox: E2BSandbox) -> None:
    seen: list[tuple[str, str]] = []

    async def on_output(stream: str, text: str) -> None:
        seen.append((stream, text))

    res = await sandbox.exec(
        "echo one; sleep 0.3; echo two >&2; echo $GREETING; exit 3",
        timeout=30,
        on_output=on_output,
    )
    assert (res.exit_code, res.stdout, res.stderr, res.timed_out) == (
        3,
        "one\nhello\n",
        "two\n",
        False,
    )
    assert "".join(t for s, t in seen if s == "stdout") == "one\nhello\n"
    assert [t for s, t in seen if s == "stderr"] == ["two\n"]
    assert seen[0] == ("stdout", "one\n")  # it came before the command ended


async def test_exec_output_is_capped_like_the_local_sandbox(sandbox: E2BSandbox) -> None:
    streamed: list[str] = []
    res = await sandbox.exec(
        "head -c 300000 /dev/zero | tr '\\0' a; echo END",
        timeout=60,
        on_output=lambda _s, t: streamed.append(t),
    )
    assert res.exit_code == 0
    assert len(res.stdout) <= OUTPUT_CAP + 100
    assert "characters cut" in res.stdout and res.stdout.endswith("END\n")
    assert len("".join(streamed)) == OUTPUT_CAP // 2  # only the head streams


async def test_exec_timeout_kills_the_command_and_what_it_started(sandbox: E2BSandbox) -> None:
    res = await sandbox.exec("sleep 61.5 & echo started; sleep 62.5", timeout=2)
    assert res.timed_out and res.stdout == "started\n"
    assert not running("sleep 61.5") and not running("sleep 62.5")
    # A command that returns takes its background processes along too.
    res = await sandbox.exec("(sleep 63.5 &); echo done", timeout=30)
    assert (res.exit_code, res.stdout) == (0, "done\n")
    assert not running("sleep 63.5")


async def test_a_cancelled_exec_stops_its_command(sandbox: E2BSandbox) -> None:
    task = asyncio.create_task(sandbox.exec("sleep 64.5", timeout=60))

    async def started() -> bool:
        return running("sleep 64.5")

    await poll_until(started, "the command's start")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def stopped() -> bool:  # its wrapper was told to stop; it kills its session
        return not running("sleep 64.5")

    await poll_until(stopped, "the command's end", timeout=10)


async def test_read_file_is_bounded_and_refuses_what_is_not_a_regular_file(
    fake: FakeE2B, sandbox: E2BSandbox
) -> None:
    res = await sandbox.exec("mkfifo f && mkdir d && truncate -s 1G huge", timeout=30)
    assert res.exit_code == 0, res
    content = await sandbox.read_file("huge", max_bytes=1000)
    assert (len(content.data), content.size, content.truncated) == (1000, 1 << 30, True)

    async def download_ended() -> bool:
        return any(p == "/workspace/huge" for p, _, _ in fake.downloads)

    await poll_until(download_ended, "the end of the download")
    # The download was closed: not the whole GiB went over the wire.
    [(_, sent, whole)] = [d for d in fake.downloads if d[0] == "/workspace/huge"]
    assert not whole and sent < 128 * 1024 * 1024
    # Up to the limit a large file (a push's bundle, a patch, an artifact) comes whole.
    res = await sandbox.exec("head -c 10000000 /dev/urandom > big && sha256sum big", timeout=30)
    data = await read_capped(sandbox, "big", 100 * 1024 * 1024)
    assert hashlib.sha256(data).hexdigest() == res.stdout.split()[0], len(data)
    for path in ("f", "./f", "/workspace/f"):
        with pytest.raises(ToolError, match="not a regular file"):
            await sandbox.read_file(path, max_bytes=10)
    with pytest.raises(ToolError, match="not a regular file"):
        await sandbox.edit_file("f", "a", "b")
    with pytest.raises(ToolError, match="is a directory"):
        await sandbox.read_file("d", max_bytes=10)
    with pytest.raises(ToolError, match="no such file"):
        await sandbox.read_file("missing", max_bytes=10)
    for outside in ("/etc/passwd", "../etc/passwd", "d/../../x"):
        with pytest.raises(ToolError, match="outside the workspace"):
            await sandbox.read_file(outside, max_bytes=10)


async def test_write_edit_and_list(sandbox: E2BSandbox) -> None:
    await sandbox.write_file("src/app.py", b"x = 1\ny = 1\n")
    await sandbox.write_file("/workspace/README.md", b"# hi\n")
    await sandbox.exec("mkdir -p .git && touch .git/config", timeout=30)
    await sandbox.edit_file("src/app.py", "x = 1", "x = 2")
    assert (await sandbox.read_file("src/app.py", max_bytes=100)).data == b"x = 2\ny = 1\n"
    with pytest.raises(ToolError, match="occurs 2 times"):
        await sandbox.edit_file("src/app.py", "= ", "=")
    with pytest.raises(ToolError, match="occurs 0 times"):
        await sandbox.edit_file("src/app.py", "nothing", "x")
    assert await sandbox.list_files(".", max_entries=100) == ["README.md", "src/app.py"]
    assert await sandbox.list_files("src", max_entries=100) == ["src/app.py"]
    assert len(await sandbox.list_files(".", max_entries=1)) == 1
    with pytest.raises(ToolError):
        await sandbox.list_files("nowhere", max_entries=10)
    # More names than the output cap holds: whole names only, no cut marker.
    long = "n" * 100
    await sandbox.exec(
        f"mkdir many && cd many && for i in $(seq 1500); do : > ${{i}}{long}; done", timeout=60
    )
    listed = await sandbox.list_files("many", max_entries=2000)
    assert 300 < len(listed) < 1500
    assert all(p.startswith("many/") and p.endswith(long) for p in listed), listed[-3:]


async def test_a_new_provider_reconnects_by_id(fake: FakeE2B, sandbox: E2BSandbox) -> None:
    await sandbox.write_file("kept.txt", b"still here")
    restarted = provider_for(fake)  # a restarted worker: nothing in memory
    again = await restarted.get(sandbox.id)
    assert again.e2b_id == sandbox.e2b_id
    assert (await again.read_file("kept.txt", max_bytes=100)).data == b"still here"
    with pytest.raises(SandboxError, match="does not exist"):
        await restarted.get("sbx_neverexisted")


async def test_a_worker_finds_a_sandbox_made_again_elsewhere(fake: FakeE2B) -> None:
    worker_a, worker_b = provider_for(fake), provider_for(fake)
    first = await worker_a.create("sbx_madeagain", SandboxSpec())
    lists = fake.requests.count(("GET", "/v2/sandboxes"))
    assert (await worker_a.get("sbx_madeagain")).e2b_id == first.e2b_id
    assert fake.requests.count(("GET", "/v2/sandboxes")) == lists  # it knew the id
    # Gone, then made again by another worker: A's id is stale and it lists again.
    await AsyncSandbox.kill(first.e2b_id, api_key=fake.api_key, api_url=fake.url)
    second = await worker_b.create("sbx_madeagain", SandboxSpec())
    assert (await worker_a.get("sbx_madeagain")).e2b_id == second.e2b_id != first.e2b_id
    await worker_b.destroy("sbx_madeagain")


async def test_pause_and_resume(fake: FakeE2B, sandbox: E2BSandbox) -> None:
    provider = provider_for(fake)
    await sandbox.write_file("state.txt", b"before")
    await provider.pause(sandbox.id)
    made = fake_of(fake, sandbox)
    assert (made.state, made.pauses) == ("paused", 1)
    with pytest.raises(SandboxError):
        await sandbox.exec("true", timeout=10)  # a paused sandbox runs nothing
    await provider.pause(sandbox.id)  # already paused: a no-op
    assert made.pauses == 1
    await provider.resume(sandbox.id)
    assert (made.state, made.resumes) == ("running", 1)
    res = await sandbox.exec("cat state.txt", timeout=30)
    assert res.stdout == "before"


async def test_destroy_kills_it_and_is_a_no_op_when_gone(fake: FakeE2B) -> None:
    provider = provider_for(fake)
    sbx = await provider.create("sbx_destroyme", SandboxSpec())
    await provider.destroy("sbx_destroyme")
    assert fake_of(fake, sbx).state == "killed"
    await provider.destroy("sbx_destroyme")
    with pytest.raises(SandboxError):
        await provider.get("sbx_destroyme")
    with pytest.raises(SandboxError):
        await sbx.exec("true", timeout=10)


async def test_list_ids_names_runyard_sandboxes_only(fake: FakeE2B) -> None:
    provider = provider_for(fake)
    await provider.create("sbx_listed1", SandboxSpec())
    await provider.create("sbx_listed2", SandboxSpec())
    await provider.pause("sbx_listed2")
    foreign = await AsyncSandbox.create(api_key=fake.api_key, api_url=fake.url)
    ids = await provider.list_ids()
    assert {"sbx_listed1", "sbx_listed2"} <= set(ids)
    assert all(i.startswith("sbx_") for i in ids)
    await provider.destroy("sbx_listed1")
    await provider.destroy("sbx_listed2")
    assert not {"sbx_listed1", "sbx_listed2"} & set(await provider.list_ids())
    await AsyncSandbox.kill(foreign.sandbox_id, api_key=fake.api_key, api_url=fake.url)
