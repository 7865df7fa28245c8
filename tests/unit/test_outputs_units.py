"""Small pure parts of outputs and artifacts: patch stats, merging branch outputs,
download signatures, artifact names, and the GitHub provider's requests."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from runyard.artifacts.save import clean_name
from runyard.artifacts.signing import signed_path, verify
from runyard.git.clone import valid_branch
from runyard.git.patch import patch_stats
from runyard.git.provider import GitHubProvider, ProviderError, provider_for
from runyard.outputs import merge_outputs
from runyard.settings import Settings

PATCH = b"""diff --git a/calc.py b/calc.py
index 1..2 100644
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,3 @@
 def mul(a, b):
-    return a * b
+    return a*b
+# end
diff --git a/img.png b/img.png
new file mode 100644
index 0..3
GIT binary patch
literal 3
KcmZ?wbN~PV0|5X4

literal 0
HcmV?d00001

"""


def test_patch_stats_count_files_and_lines_not_headers() -> None:
    assert patch_stats(PATCH) == (2, 2, 1)
    assert patch_stats(b"") == (0, 0, 0)


def test_a_branch_pushed_again_replaces_its_entry() -> None:
    first = [{"type": "text", "text": "x"}, {"type": "branch", "name": "f", "sha": "1"}]
    merged = merge_outputs(first, [{"type": "branch", "name": "f", "sha": "2"}])
    assert merged == [{"type": "text", "text": "x"}, {"type": "branch", "name": "f", "sha": "2"}]
    more = merge_outputs(merged, [{"type": "branch", "name": "g", "sha": "3"}])
    assert [o.get("name") for o in more] == [None, "f", "g"]


def test_signatures_bind_path_and_expiry() -> None:
    key, path = b"k" * 32, "org/run/art/report.txt"
    later = int(time.time()) + 60
    url = signed_path(key, path, later)
    sig = url.split("signature=")[1]
    assert verify(key, path, str(later), sig)
    assert not verify(key, path + "x", str(later), sig)
    assert not verify(key, path, str(later + 1), sig)
    assert not verify(b"other" * 8, path, str(later), sig)
    assert not verify(key, path, "²", sig) and not verify(key, path, str(later), "zz")
    past = int(time.time()) - 1
    assert not verify(key, path, str(past), signed_path(key, path, past).split("signature=")[1])


def test_names_and_branches() -> None:
    assert clean_name("../../etc/passwd") == "passwd"
    assert clean_name("a b;c\n.txt") == "a_b_c_.txt" and clean_name("..") == "artifact"
    for good in ("feat", "agent/add-1", "runyard/run_abc"):
        assert valid_branch(good)
    for bad in ("-x", "a..b", "a//b", "x.lock", "a@{1}", "ref/", "a b", ""):
        assert not valid_branch(bad)


async def test_github_provider_requests() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            return httpx.Response(200, json={"default_branch": "trunk"})
        if request.url.path.endswith("/pulls"):
            return httpx.Response(201, json={"number": 5, "html_url": "https://gh/o/r/pull/5"})
        return httpx.Response(422, json={"message": "Validation Failed"})

    gh = GitHubProvider("https://api.gh", "tok", "o", "r", transport=httpx.MockTransport(handle))
    assert await gh.default_branch() == "trunk"
    pr = await gh.create_pull_request(title="t", body="b", head="h", base="trunk", draft=True)
    assert (pr.number, pr.url) == (5, "https://gh/o/r/pull/5")
    assert seen[1].url == "https://api.gh/repos/o/r/pulls"
    assert seen[1].headers["Authorization"] == "Bearer tok"
    assert json.loads(seen[1].content) == {
        "title": "t",
        "body": "b",
        "head": "h",
        "base": "trunk",
        "draft": True,
    }
    with pytest.raises(ProviderError, match="422: Validation Failed"):
        await gh.create_issue(title="t", body="", labels=[])


def test_pull_requests_only_for_the_operator_host_with_a_token() -> None:
    s = Settings(git_base_url="https://github.com", git_token="t")
    assert provider_for("acme/w", s) is not None
    assert provider_for("https://github.com/acme/w.git", s) is not None
    assert provider_for("https://evil.example/acme/w.git", s) is None  # no token to others
    assert provider_for("acme/w", Settings(git_base_url="https://github.com")) is None
