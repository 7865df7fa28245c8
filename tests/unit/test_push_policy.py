"""Which pushed branches the relay forwards (``runyard.git.push_policy``), and which local
repositories a run may name at all (``RUNYARD_LOCAL_REPO_ROOTS``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runyard.git.clone import GitState
from runyard.git.intake import InvalidRepo, parse_repo
from runyard.git.push_policy import select
from runyard.settings import Settings

SHA = "a" * 40


def _state(upstream: str = "https://git.example/acme/w.git") -> GitState:
    return GitState(upstream, "main", SHA, "/workspace", "/runyard/remote/origin.git")


def test_branches_past_the_caps_are_refused_in_one_message() -> None:
    s = Settings(git_max_branches_per_push=3, git_max_branches_per_run=5)
    changed = {f"b{i:03d}": SHA for i in range(200)}
    chosen = select(changed, _state(), {}, s)
    assert list(chosen.wanted) == ["b000", "b001", "b002"]
    assert len(chosen.refused) == 197
    assert {r.message for r in chosen.refused} == {
        "refused forwarding b003, b004, b005, b006, b007 and 192 more: a run forwards at most "
        "5 branches, at most 3 per push; push fewer branches (pushing a branch already "
        "forwarded again updates it)"
    }
    # Per run: 4 forwarded already, one more new branch fits; updates of known ones do too.
    known = {f"k{i}": SHA for i in range(4)}
    chosen = select({"k0": "b" * 40, "new1": SHA, "new2": SHA}, _state(), known, s)
    assert sorted(chosen.wanted) == ["k0", "new1"]
    assert [r.branch for r in chosen.refused] == ["new2"]


def test_default_branch_and_bad_names_are_refused() -> None:
    chosen = select({"main": "b" * 40, "a..b": SHA, "ok": SHA}, _state(), {}, Settings())
    assert list(chosen.wanted) == ["ok"]
    assert {r.branch for r in chosen.refused} == {"main", "a..b"}


def test_a_local_repository_is_read_only_without_roots(tmp_path: Path) -> None:
    s = Settings(allow_local_repos=True)
    chosen = select({"runyard/x": SHA, "feat": SHA}, _state(tmp_path.as_uri()), {}, s)
    assert not chosen.wanted
    assert all("read-only to runs" in r.message for r in chosen.refused)


def test_a_local_repository_under_a_root_takes_only_the_prefix(tmp_path: Path) -> None:
    s = Settings(
        allow_local_repos=True, local_repo_roots=str(tmp_path), local_push_prefix="agents/"
    )
    repo = tmp_path / "repo"
    chosen = select({"agents/x": SHA, "feat": SHA}, _state(repo.as_uri()), {}, s)
    assert list(chosen.wanted) == ["agents/x"]
    (refused,) = chosen.refused
    assert refused.branch == "feat" and "push to agents/feat" in refused.message


def test_local_repository_roots(tmp_path: Path) -> None:
    inside, outside = tmp_path / "ok", tmp_path.parent / "elsewhere"
    s = Settings(allow_local_repos=True, local_repo_roots=f"{tmp_path}:/nonexistent")
    assert parse_repo(str(inside), s).url == inside.resolve().as_uri()
    assert parse_repo(tmp_path.as_uri(), s).kind == "local"
    (tmp_path / "link").symlink_to(outside)  # a symlink out of a root is outside it
    for bad in (str(outside), f"{tmp_path}/../elsewhere", str(tmp_path / "link")):
        with pytest.raises(InvalidRepo, match="RUNYARD_LOCAL_REPO_ROOTS"):
            parse_repo(bad, s)
    with pytest.raises(ValueError):
        Settings(local_repo_roots="relative/dir")
    with pytest.raises(ValueError):
        Settings(local_push_prefix="no-slash")


@pytest.mark.parametrize("relative", [".", "..", "./nope", "../x", "~/src/x"])
def test_a_relative_path_is_refused_as_a_path(relative: str) -> None:
    """Not taken for an owner/name slug (``./nope`` is no repository on the git host)."""
    allowed = Settings(allow_local_repos=True)
    with pytest.raises(InvalidRepo, match="must be an absolute path or file:// URL"):
        parse_repo(relative, allowed)
    with pytest.raises(InvalidRepo, match=r"local repositories .* are disabled"):
        parse_repo(relative, Settings())


def test_the_refusal_names_local_paths_only_when_they_are_allowed() -> None:
    with pytest.raises(InvalidRepo) as allowed:
        parse_repo("x", Settings(allow_local_repos=True))
    assert "absolute local path" in str(allowed.value)
    with pytest.raises(InvalidRepo) as refused:
        parse_repo("x", Settings())
    assert "local" not in str(refused.value)
