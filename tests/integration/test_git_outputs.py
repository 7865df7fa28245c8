"""Pushes, pull requests, issues, artifacts and changes.patch, end to end: a stack whose
RUNYARD_GIT_BASE_URL is a directory of real bare repositories (file://), the scripted
model driving the tools in bubblewrap, and a local server speaking GitHub's REST subset."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runyard.artifacts.signing import signed_path
from runyard.sandbox.disk import loop_mounts_possible
from tests.conftest import TERMINAL, poll_until, readable_by_others, script, wait_for
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.github import FakeGitHub
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

ADD = "def add(a, b):\n    return a + b\n"


def bash(command: str) -> dict[str, object]:
    return {"tool": "bash", "input": {"command": command}}


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
async def gs(
    tmp_path_factory: pytest.TempPathFactory,
    temporal_server: str,
    fake_anthropic: FakeAnthropic,
    github: FakeGitHub,
) -> AsyncIterator[GitStack]:
    remotes = tmp_path_factory.mktemp("remotes")
    data = tmp_path_factory.mktemp("runyard-git")
    async with git_stack(
        data,
        temporal_server,
        fake_anthropic.base_url,
        remotes.as_uri(),
        remotes,
        RUNYARD_GITHUB_API_URL=github.url,
        RUNYARD_GITHUB_TOKEN="gh-api-token",
    ) as s:
        yield s


async def _run(gs: GitStack, repo: str, *lines: dict[str, object]) -> dict[str, Any]:
    resp = await gs.api.post(
        "/v1/runs",
        json={"prompt": script(*lines), "model": "scripted", "repo": repo, "start": True},
    )
    assert resp.status_code == 201, resp.text
    done = await wait_for(gs.api, resp.json()["id"], TERMINAL, timeout=60)
    assert done["status"] == "completed", done
    return done


async def test_push_is_forwarded_and_refusals_say_why(gs: GitStack) -> None:
    bare = make_remote(gs.remotes, "acme/push")
    main_before = refs(bare)["refs/heads/main"]
    done = await _run(
        gs,
        "acme/push",
        bash(
            f"git checkout -q -b feat && printf {ADD!r} >> calc.py && "
            "git commit -qam 'add add()' && git push origin feat"
        ),
        bash("git push origin HEAD:main"),
        bash("git push origin :feat"),
        bash("git commit -q --amend -m 'rewritten' && git push -f origin feat"),
        {"text": "pushed"},
    )
    after = refs(bare)
    sha = after["refs/heads/feat"]
    assert after["refs/heads/main"] == main_before  # the default branch was not touched
    assert git("--git-dir", str(bare), "show", f"{sha}:calc.py") == (CALC + ADD).strip()
    assert git("--git-dir", str(bare), "log", "-1", "--format=%s", sha) == "add add()"

    branch = [o for o in done["outputs"] if o["type"] == "branch"]
    assert branch == [
        {"type": "branch", "name": "feat", "sha": sha, "url": f"{bare.as_uri()}#feat"}
    ]
    evs = await events(gs.api, str(done["id"]))
    detected = [e["data"] for e in evs if e["type"] == "output.detected"]
    assert {"type": "branch", "name": "feat", "sha": sha, "url": branch[0]["url"]} in detected
    results = tool_results(evs)
    assert "runyard: forwarded feat" in results[0]
    assert "default branch" in results[1] and "main" in results[1]
    assert "deleting feat" in results[2] or "deletion" in results[2]
    assert "non-fast-forward" in results[3] or "force" in results[3]
    # The amended commit has the same tree as the pushed one: nothing unpushed, no patch.
    assert not [o for o in done["outputs"] if o["type"] == "patch"]


async def test_no_token_reaches_the_sandbox(gs: GitStack) -> None:
    make_remote(gs.remotes, "acme/secret")
    done = await _run(
        gs,
        "acme/secret",
        bash("env; git config -l; cat .git/config; git remote -v"),
        bash("grep -rl -e ghs_ -e gh-api-token -e x-access-token /workspace /runyard /tmp; true"),
        {"text": "looked"},
    )
    results = "\n".join(tool_results(await events(gs.api, str(done["id"]))))
    assert "remote.origin.url=/runyard/remote/origin.git" in results
    for secret in (gs.token, "gh-api-token", "x-access-token", gs.secret_key):
        assert secret not in results


async def test_pull_request_and_issue(gs: GitStack, github: FakeGitHub) -> None:
    bare = make_remote(gs.remotes, "acme/pr")
    done = await _run(
        gs,
        "acme/pr",
        {
            "tool": "write_file",
            "input": {"path": "calc.py", "content": CALC + ADD},
        },
        {
            "tool": "create_pull_request",
            "input": {"title": "Add add()", "body": "Adds add.", "branch": "agent/add"},
        },
        {"tool": "create_issue", "input": {"title": "mul has no tests", "labels": ["tests"]}},
        {"text": "opened"},
    )
    sha = refs(bare)["refs/heads/agent/add"]
    assert git("--git-dir", str(bare), "log", "-1", "--format=%s", sha) == "Add add()"
    pulls = [c for c in github.calls if c.path == "/repos/acme/pr/pulls"]
    assert len(pulls) == 1
    assert pulls[0].headers["Authorization"] == "Bearer gh-api-token"
    assert pulls[0].body["head"] == "agent/add" and pulls[0].body["base"] == "main"
    assert pulls[0].body["title"] == "Add add()" and pulls[0].body["body"] == "Adds add."
    issues = [c for c in github.calls if c.path == "/repos/acme/pr/issues"]
    assert issues[0].body == {"title": "mul has no tests", "body": "", "labels": ["tests"]}
    outputs = done["outputs"]
    assert isinstance(outputs, list)
    by_type = {o["type"]: o for o in outputs}
    assert by_type["branch"]["name"] == "agent/add" and by_type["branch"]["sha"] == sha
    assert by_type["pr"]["branch"] == "agent/add" and by_type["pr"]["url"].endswith("/pull/1")
    assert by_type["issue"]["url"].endswith(f"/issues/{by_type['issue']['number']}")
    assert "patch" not in by_type  # everything was pushed
    detected = [
        e["data"]["type"]
        for e in await events(gs.api, str(done["id"]))
        if e["type"] == "output.detected"
    ]
    assert {"branch", "pr", "issue", "text"} <= set(detected)


async def test_artifacts_patch_and_signed_downloads(gs: GitStack, tmp_path: Path) -> None:
    bare = make_remote(gs.remotes, "acme/patch")
    base = refs(bare)["refs/heads/main"]
    done = await _run(
        gs,
        "acme/patch",
        bash(f"printf {ADD!r} >> calc.py && printf 'all good\\n' > report.txt"),
        bash("head -c 3000 /dev/urandom > blob.bin && rm -f nothing"),
        {"tool": "save_artifact", "input": {"path": "report.txt", "name": "report.txt"}},
        {"tool": "save_artifact", "input": {"path": "/etc/passwd"}},
        {"tool": "save_artifact", "input": {"path": "no-such-file"}},
        {"text": "left changes"},
    )
    run_id = str(done["id"])
    results = tool_results(await events(gs.api, run_id))
    assert "saved report.txt as artifact" in results[2]
    assert "outside the workspace" in results[3] and "no such regular file" in results[4]
    patch = next(o for o in done["outputs"] if o["type"] == "patch")
    assert patch["files"] == 3 and patch["insertions"] == 3 and patch["deletions"] == 0

    listed = (await gs.api.get(f"/v1/runs/{run_id}/artifacts")).json()
    assert listed["pagination"]["total"] == 2
    # Artifacts, the store and the secret key are the user's alone (issue 23, item 8).
    data = Path(gs.stack.env["RUNYARD_DATA_DIR"])
    assert len(list((data / "artifacts").rglob("*"))) >= 2
    assert readable_by_others(data) == []
    names = {a["name"]: a for a in listed["data"]}
    assert set(names) == {"report.txt", "changes.patch"}
    assert names["changes.patch"]["id"] == patch["artifactId"]

    # The patch downloads without a key and applies on the commit the run cloned.
    signed = await gs.api.post(
        f"/v1/runs/{run_id}/artifacts/presign", json={"artifactId": patch["artifactId"]}
    )
    assert signed.status_code == 200, signed.text
    url = signed.json()["url"]
    async with httpx.AsyncClient() as anonymous:
        got = await anonymous.get(url)
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/x-diff")
        checkout = tmp_path / "checkout"
        git("clone", "-q", str(bare), str(checkout))
        git("checkout", "-q", base, cwd=checkout)
        (tmp_path / "changes.patch").write_bytes(got.content)
        git("apply", "--index", str(tmp_path / "changes.patch"), cwd=checkout)
        assert (checkout / "calc.py").read_text() == CALC + ADD
        assert (checkout / "report.txt").read_text() == "all good\n"
        assert len((checkout / "blob.bin").read_bytes()) == 3000

        report = await gs.api.post(
            f"/v1/runs/{run_id}/artifacts/presign",
            json={"storagePath": names["report.txt"]["storagePath"], "expiresIn": 60},
        )
        rurl = report.json()["url"]
        assert (await anonymous.get(rurl)).content == b"all good\n"
        # Tampered: another path, or another signature, or a later expiry.
        other = rurl.replace("report.txt", "changes.patch")
        tampered = rurl[:-4] + ("0000" if not rurl.endswith("0000") else "1111")
        later = rurl.replace("expires=", "expires=9")
        # Expired: signed with the install's key, but in the past.
        path = names["report.txt"]["storagePath"]
        expired = gs.stack.api_url + signed_path(gs.secret_key.encode(), path, int(time.time()) - 5)
        for bad in (other, tampered, later, expired):
            resp = await anonymous.get(bad)
            assert resp.status_code == 403, bad
            assert resp.headers["content-type"] == "application/problem+json"

    missing = await gs.api.post(
        f"/v1/runs/{run_id}/artifacts/presign", json={"artifactId": "art_x"}
    )
    assert missing.status_code == 404
    both = await gs.api.post(f"/v1/runs/{run_id}/artifacts/presign", json={})
    assert both.status_code == 400


async def test_repository_intake_refusals(gs: GitStack) -> None:
    """Local repositories are off on this stack; client hosts follow the callback policy;
    a missing repository on the operator's host is a 404 before any run starts."""
    for repo, status, code in [
        ("/etc", 400, "VALIDATION_FAILED"),
        (f"{gs.remotes.as_uri()}/../x.git", 400, "VALIDATION_FAILED"),
        ("file:///etc/x.git", 400, "VALIDATION_FAILED"),
        ("acme/does-not-exist", 404, "REPOSITORY_NOT_FOUND"),
        ("https://169.254.169.254/latest.git", 422, "CALLBACK_URL_FORBIDDEN"),
        ("git@127.0.0.1:x/y.git", 422, "CALLBACK_URL_FORBIDDEN"),
    ]:
        resp = await gs.api.post(
            "/v1/runs", json={"prompt": "x", "model": "scripted", "repo": repo}
        )
        assert resp.status_code == status, (repo, resp.text)
        assert resp.json()["type"] == code


async def test_a_repository_gone_before_the_clone_fails_the_run_clearly(gs: GitStack) -> None:
    bare = make_remote(gs.remotes, "acme/gone")
    resp = await gs.api.post(
        "/v1/runs",
        json={"prompt": script({"text": "x"}), "model": "scripted", "repo": "acme/gone"},
    )
    assert resp.status_code == 201, resp.text
    shutil.rmtree(bare)
    assert (await gs.api.post(f"/v1/runs/{resp.json()['id']}/exec")).status_code == 202
    done = await wait_for(gs.api, resp.json()["id"], TERMINAL, timeout=60)
    assert done["status"] == "failed" and done["failReason"] == "error"
    assert done["error"]["code"] == "REPOSITORY_NOT_FOUND", done["error"]


async def test_a_run_that_fails_keeps_its_unpushed_work(gs: GitStack) -> None:
    """Nothing is lost: a run ended by a guardrail still leaves changes.patch."""
    make_remote(gs.remotes, "acme/fails")
    resp = await gs.api.post(
        "/v1/runs",
        json={
            "prompt": script(bash("echo more >> notes.txt"), bash("true"), {"text": "never"}),
            "model": "scripted",
            "repo": "acme/fails",
            "maxTurns": 1,
            "start": True,
        },
    )
    assert resp.status_code == 201, resp.text
    done = await wait_for(gs.api, resp.json()["id"], TERMINAL, timeout=60)
    assert (done["status"], done["failReason"]) == ("failed", "max_turns")
    patch = [o for o in done["outputs"] if o["type"] == "patch"]
    assert len(patch) == 1 and patch[0]["files"] == 1 and patch[0]["insertions"] == 1


async def test_a_cancel_forwards_nothing_more(gs: GitStack) -> None:
    """A branch pushed to the sandbox's origin but not yet forwarded (the command did not
    say `push`) is not forwarded by the cancel: no push, no branch output, after the 200.
    The work is kept as changes.patch."""
    bare = make_remote(gs.remotes, "acme/cancel")
    before = refs(bare)
    resp = await gs.api.post(
        "/v1/runs",
        json={
            "prompt": script(
                bash(
                    f"git checkout -q -b late && printf {ADD!r} >> calc.py && "
                    "git commit -qam late && p=pu && git ${p}sh -q origin late"
                ),
                {"sleep": 60},
                {"text": "never"},
            ),
            "model": "scripted",
            "repo": "acme/cancel",
            "start": True,
        },
    )
    assert resp.status_code == 201, resp.text
    run_id = resp.json()["id"]

    async def pushed_inside() -> bool:
        return bool(tool_results(await events(gs.api, run_id)))

    await poll_until(pushed_inside, "the push to the sandbox's origin", timeout=60)
    cancel = await gs.api.post(f"/v1/runs/{run_id}/cancel")
    assert cancel.json() == {"id": run_id, "status": "cancelled"}

    async def kept() -> bool:  # what the end of the run keeps (or, before, forwarded)
        return bool((await gs.api.get(f"/v1/runs/{run_id}")).json()["outputs"])

    await poll_until(kept, "the cancelled run's changes kept", timeout=30)
    done = (await gs.api.get(f"/v1/runs/{run_id}")).json()
    assert done["status"] == "cancelled"
    assert [o["type"] for o in done["outputs"]] == ["patch"]
    assert refs(bare) == before  # nothing reached the real remote
    assert not [e for e in await events(gs.api, run_id) if e["type"] == "output.detected"]


async def test_branches_per_push_are_capped(gs: GitStack) -> None:
    """One push of 12 branches forwards 10 (the default cap); the agent reads why the rest
    were not, and the run's later pushes stay within the cap per run."""
    bare = make_remote(gs.remotes, "acme/spam")
    branches = " ".join(f"HEAD:refs/heads/b{i:02d}" for i in range(12))
    done = await _run(
        gs,
        "acme/spam",
        bash(f"git commit -q --allow-empty -m spam && git push -q origin {branches}"),
        bash("git push -q origin HEAD:refs/heads/one-more"),
        {"text": "spammed"},
    )
    forwarded = sorted(r.removeprefix("refs/heads/") for r in refs(bare) if r != "refs/heads/main")
    assert forwarded == [f"b{i:02d}" for i in range(10)]
    assert len([o for o in done["outputs"] if o["type"] == "branch"]) == 10
    first, second = tool_results(await events(gs.api, str(done["id"])))[:2]
    assert "refused forwarding b10, b11: a run forwards at most 10 branches" in first
    assert first.count("refused forwarding") == 1  # one line for the branches refused
    assert "refused forwarding b10, b11, one-more: a run forwards at most 10" in second


async def test_large_pushes_patches_and_artifacts_survive(gs: GitStack, tmp_path: Path) -> None:
    """Up to the documented limits the work arrives whole, whatever the size of one runner
    message; beyond them the agent gets a tool error and the run goes on."""
    bare = make_remote(gs.remotes, "acme/large")
    done = await _run(
        gs,
        "acme/large",
        bash(
            "git checkout -q -b big && head -c 4500000 /dev/urandom > pushed.bin && "
            "git add pushed.bin && git commit -qm big && git push -q origin big && "
            "git checkout -q main"
        ),
        bash(
            "head -c 3600000 /dev/urandom | base64 > unpushed.txt && "
            "head -c 6000000 /dev/urandom > art.bin && truncate -s 101M huge.bin"
        ),
        {"tool": "save_artifact", "input": {"path": "art.bin"}},
        {"tool": "save_artifact", "input": {"path": "huge.bin"}},  # over 100 MiB
        bash("rm huge.bin && echo goes on"),
        {"text": "done"},
    )
    run_id = str(done["id"])
    results = tool_results(await events(gs.api, run_id))
    assert "runyard: forwarded big" in results[0], results[0]
    size = git("--git-dir", str(bare), "cat-file", "-s", "big:pushed.bin")
    assert size == "4500000", size
    assert "saved art.bin as artifact" in results[2] and "6000000 bytes" in results[2]
    assert "more than the limit of 104857600" in results[3], results[3]
    assert "goes on" in results[4]
    patch = next(o for o in done["outputs"] if o["type"] == "patch")
    assert patch["files"] == 2, patch  # unpushed.txt and art.bin
    listed = (await gs.api.get(f"/v1/runs/{run_id}/artifacts")).json()["data"]
    sizes = {a["name"]: a["size"] for a in listed}
    assert sizes["art.bin"] == 6_000_000 and sizes["changes.patch"] > 12_000_000, sizes


@pytest.mark.skipif(loop_mounts_possible() is not None, reason="no loop mounts here")
async def test_filling_the_disk_through_the_remote_ends_the_run(gs: GitStack) -> None:
    make_remote(gs.remotes, "acme/fill")
    resp = await gs.api.post(
        "/v1/runs",
        json={
            "prompt": script(
                bash(
                    "fallocate -l 6G /runyard/remote/origin.git/a; "
                    "fallocate -l 6G /runyard/remote/origin.git/b"
                ),
                {"text": "never"},
            ),
            "model": "scripted",
            "repo": "acme/fill",
            "start": True,
        },
    )
    assert resp.status_code == 201, resp.text
    done = await wait_for(gs.api, resp.json()["id"], TERMINAL, timeout=60)
    assert (done["status"], done["failReason"]) == ("failed", "error"), done
    assert done["error"]["code"] == "RUN_RESOURCE_LIMIT_EXCEEDED", done
