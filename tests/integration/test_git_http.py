"""Clone and push over smart HTTP (the real ``git http-backend`` behind a server that
checks the token), and the two attacks of issue #12 as regression tests."""

from __future__ import annotations

import hashlib
import secrets
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from runyard.devserver import free_port
from tests.conftest import TERMINAL, script, wait_for
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.git_http import GitHttpServer
from tests.integration.git_support import (
    CALC,
    GitStack,
    events,
    git,
    git_stack,
    make_remote,
    refs,
    tool_results,
)

BUCKET = "runyard-test"


@pytest.fixture(scope="module")
def remotes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("http-remotes")


@pytest.fixture(scope="module")
async def hs(
    tmp_path_factory: pytest.TempPathFactory,
    temporal_server: str,
    fake_anthropic: FakeAnthropic,
    remotes: Path,
) -> AsyncIterator[tuple[GitStack, GitHttpServer]]:
    """A stack whose RUNYARD_GIT_BASE_URL is the smart HTTP server (the token it checks
    is the stack's RUNYARD_GIT_TOKEN)."""
    data = tmp_path_factory.mktemp("runyard-http")
    token = "ghs_" + secrets.token_hex(16)
    server = GitHttpServer(remotes, token)
    server.start()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    s3.start()
    aws = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3._port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    boto3.client(
        "s3",
        endpoint_url=aws["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)
    try:
        async with git_stack(
            data,
            temporal_server,
            fake_anthropic.base_url,
            server.url,
            remotes,
            token=token,
            RUNYARD_ARTIFACTS_URL=f"s3://{BUCKET}/runs",
            **aws,
        ) as s:
            yield s, server
    finally:
        server.stop()
        s3.stop()


async def test_clone_and_push_over_smart_http(hs: tuple[GitStack, GitHttpServer]) -> None:
    gs, server = hs
    bare = make_remote(gs.remotes, "acme/web")
    prompt = script(
        {
            "tool": "bash",
            "input": {
                "command": "env; git config -l; cat .git/config; git remote -v; "
                "git checkout -q -b web-feat && echo '# more' >> calc.py && "
                "git commit -qam more && git push origin web-feat"
            },
        },
        {"tool": "bash", "input": {"command": "echo draft > notes.txt"}},
        {"text": "pushed"},
    )
    resp = await gs.api.post(
        "/v1/runs", json={"prompt": prompt, "model": "scripted", "repo": "acme/web", "start": True}
    )
    assert resp.status_code == 201, resp.text
    done = await wait_for(gs.api, resp.json()["id"], TERMINAL, timeout=60)
    assert done["status"] == "completed", done
    sha = refs(bare)["refs/heads/web-feat"]
    assert git("--git-dir", str(bare), "show", f"{sha}:calc.py") == CALC + "# more"
    seen = [(m, p) for m, p, ok in server.requests if "/acme/web.git/" in p]
    assert any(p.endswith("git-upload-pack") for _, p in seen)  # the clone
    assert any(p.endswith("git-receive-pack") for _, p in seen)  # the forwarded push
    assert all(ok for _, p, ok in server.requests if "/acme/web.git/" in p)
    out = "\n".join(tool_results(await events(gs.api, str(done["id"]))))
    assert "runyard: forwarded web-feat" in out
    assert gs.token not in out and "x-access-token" not in out and "Authorization" not in out
    assert f"127.0.0.1:{server.port}" not in out  # the sandbox's origin is not the real one
    by_type = {o["type"]: o for o in done["outputs"]}
    assert by_type["branch"]["name"] == "web-feat"

    # notes.txt was left unpushed: changes.patch went to the S3 bucket, and its presigned
    # URL (a real one, signed by boto3) downloads it without credentials.
    assert by_type["patch"]["files"] == 2 and by_type["patch"]["insertions"] == 2
    presigned = await gs.api.post(
        f"/v1/runs/{done['id']}/artifacts/presign",
        json={"artifactId": by_type["patch"]["artifactId"], "expiresIn": 120},
    )
    assert presigned.status_code == 200, presigned.text
    url = presigned.json()["url"]
    assert url.startswith("http://127.0.0.1:") and f"/{BUCKET}/runs/" in url
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=120" in url
    async with httpx.AsyncClient() as anonymous:
        got = await anonymous.get(url)
    assert got.status_code == 200
    assert b"+draft" in got.content and b"+# more" in got.content


def _objects(repo: Path) -> dict[str, str]:
    return {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((repo / ".git" / "objects").rglob("*"))
        if p.is_file()
    }


async def test_a_local_clone_shares_no_file_with_its_source(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Issue #12: through hardlinks the agent rewrote the host repository's objects."""
    src = tmp_path / "victim"
    src.mkdir()
    git("init", "-q", "-b", "main", str(src))
    (src / "calc.py").write_text(CALC)
    git("add", "-A", cwd=src)
    git("commit", "-q", "-m", "calc", cwd=src)
    git("gc", "-q", cwd=src)  # packs too
    before = _objects(src)
    attack = (
        "for f in $(find .git/objects -type f); do chmod u+w $f; printf tampered > $f; done; "
        "find .git/objects -type f | wc -l"
    )
    for repo in (str(src), src.as_uri()):
        prompt = script({"tool": "bash", "input": {"command": attack}}, {"text": "done"})
        run = (
            await api.post(
                "/v1/runs",
                json={"prompt": prompt, "model": "scripted", "repo": repo, "start": True},
            )
        ).json()
        done = await wait_for(api, run["id"], TERMINAL, timeout=60)
        assert done["status"] == "completed", done
        result = tool_results(await events(api, run["id"]))[0]
        assert int(result.split("stdout:\n")[1].split()[0]) > 0  # it did rewrite its copies
    assert _objects(src) == before
    assert git("cat-file", "-p", "HEAD:calc.py", cwd=src) == CALC.strip()
    git("fsck", "--full", "--strict", cwd=src)


class Listener:
    """A TCP listener on loopback that counts every connection it is offered."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


async def test_client_urls_never_reach_a_loopback_listener(
    hs: tuple[GitStack, GitHttpServer],
) -> None:
    """Issue #12: the API ran ``git ls-remote`` against any URL (a port scanner)."""
    gs, _ = hs
    listener = Listener()
    try:
        cases: list[tuple[str, int]] = [
            (f"https://127.0.0.1:{listener.port}/x.git", 422),
            (f"https://localhost:{listener.port}/x.git", 422),
            (f"ssh://127.0.0.1:{listener.port}/x.git", 422),
            (f"http://127.0.0.1:{listener.port}/x.git", 400),
            (f"git://127.0.0.1:{listener.port}/x.git", 400),
            ("https://169.254.169.254/latest/meta-data.git", 422),
        ]
        for repo, status in cases:
            body: dict[str, Any] = {"prompt": "x", "model": "scripted", "repo": repo}
            resp = await gs.api.post("/v1/runs", json={**body, "start": True})
            assert resp.status_code == status, (repo, resp.text)
            if status == 422:
                assert resp.json()["type"] == "CALLBACK_URL_FORBIDDEN"
        assert listener.accepted == 0
    finally:
        listener.close()


async def test_without_a_provider_the_tools_say_so_and_the_run_goes_on(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    bare = make_remote(tmp_path, "local/calc")
    prompt = script(
        {"tool": "create_pull_request", "input": {"title": "x"}},
        {"tool": "create_issue", "input": {"title": "y"}},
        {"tool": "bash", "input": {"command": "echo '# note' >> calc.py"}},
        {"text": "done"},
    )
    run = (
        await api.post(
            "/v1/runs",
            json={"prompt": prompt, "model": "scripted", "repo": bare.as_uri(), "start": True},
        )
    ).json()
    done = await wait_for(api, run["id"], TERMINAL, timeout=60)
    assert done["status"] == "completed", done
    evs = await events(api, run["id"])
    errors = [e["data"] for e in evs if e["type"] == "tool.result"][:2]
    assert all(e["isError"] and "no pull request provider" in e["output"] for e in errors)
    assert "git push origin <branch>" in errors[0]["output"]
    assert [o["type"] for o in done["outputs"]] == ["text", "patch"]
    assert refs(bare) == {"refs/heads/main": refs(bare)["refs/heads/main"]}  # nothing pushed
