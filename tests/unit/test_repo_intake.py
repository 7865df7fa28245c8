"""Which ``repo`` strings a run may name, and which hosts they may reach."""

from __future__ import annotations

from pathlib import Path

import pytest

from runyard.git.intake import InvalidRepo, check_address, parse_repo, protocols
from runyard.settings import Settings
from runyard.ssrf import ForbiddenURL


def _settings(**kw: object) -> Settings:
    return Settings(git_base_url="https://git.example", **kw)  # type: ignore[arg-type]


def test_slugs_and_urls() -> None:
    s = _settings()
    slug = parse_repo("acme/widgets", s)
    assert slug.url == "https://git.example/acme/widgets.git" and slug.trusted
    assert (slug.owner, slug.name) == ("acme", "widgets")
    url = parse_repo("https://h.example/o/r.git", s)
    assert not url.trusted and url.host == "h.example" and url.port == 443
    assert (url.owner, url.name) == ("o", "r")
    scp = parse_repo("git@h.example:o/r.git", s)
    assert scp.host == "h.example" and scp.port == 22 and not scp.trusted
    assert parse_repo("https://git.example/acme/w.git", s).trusted
    assert protocols(s) == "https:ssh"


@pytest.mark.parametrize(
    "bad",
    [
        "a b",
        "x",
        "../../etc passwd",
        "/srv/repo",
        "file:///srv/repo",
        "http://127.0.0.1:9/x.git",
        "git://h.example/x.git",
        "ext::sh -c touch% /tmp/pwned",
        "https://user:pw@h.example/x.git",
        "-uhelp",
        "git@-oProxyCommand=x:y",
    ],
)
def test_refused_forms(bad: str) -> None:
    with pytest.raises(InvalidRepo):
        parse_repo(bad, _settings())


def test_local_repos_only_when_allowed() -> None:
    s = _settings(allow_local_repos=True)
    assert parse_repo("/srv/repo", s).url == "file:///srv/repo"
    assert parse_repo("file:///srv/repo", s).kind == "local"
    assert "file" in protocols(s)


def test_no_local_repository_inside_the_sandboxes(tmp_path: Path) -> None:
    """Another run's workspace, origin or mirror (or one's own, made by the agent) is
    never a run's repository: the host would read an agent-made repository, and another
    organization's work. Through a symlink, under roots or not, it is refused."""
    data = tmp_path / "data"
    workspace = data / "sandboxes" / "sbx_other" / "disk" / "workspace"
    workspace.mkdir(parents=True)
    (tmp_path / "link").symlink_to(workspace)
    for kw in ({}, {"local_repo_roots": str(tmp_path)}):
        s = _settings(allow_local_repos=True, data_dir=data, **kw)
        for repo in (str(workspace), workspace.as_uri(), str(tmp_path / "link")):
            with pytest.raises(InvalidRepo, match="sandboxes"):
                parse_repo(repo, s)
        elsewhere = _settings(allow_local_repos=True, sandbox_dir=tmp_path / "sbx", **kw)
        assert parse_repo(str(workspace), elsewhere).kind == "local"
        with pytest.raises(InvalidRepo, match="sandboxes"):
            parse_repo(str(tmp_path / "sbx" / "sbx_x" / "mirror.git"), elsewhere)


async def _resolver(host: str, port: int) -> list[str]:
    return {"internal.example": ["10.0.0.5"], "public.example": ["93.184.215.14"]}[host]


@pytest.mark.parametrize(
    "repo",
    [
        "https://127.0.0.1:8080/x.git",
        "https://169.254.169.254/latest.git",
        "ssh://internal.example/x.git",
        "git@internal.example:o/r.git",
        "https://metadata.google.internal/x.git",
        "https://[::1]/x.git",
    ],
)
async def test_client_hosts_follow_the_callback_policy(repo: str) -> None:
    with pytest.raises(ForbiddenURL):
        await check_address(parse_repo(repo, _settings()), _settings(), _resolver)


async def test_public_hosts_and_the_operator_host_pass() -> None:
    s = _settings()
    assert await check_address(parse_repo("https://public.example/o/r", s), s, _resolver)
    assert await check_address(parse_repo("acme/w", s), s, _resolver) == []
    private = _settings(allow_private_callbacks=True)
    src = parse_repo("https://127.0.0.1:8080/x.git", private)
    assert await check_address(src, private, _resolver) == ["127.0.0.1"]
    with pytest.raises(ForbiddenURL):  # link-local stays refused
        await check_address(parse_repo("https://169.254.169.254/x", private), private, _resolver)


def test_credentials_and_pins_per_remote() -> None:
    from runyard.git.gitcmd import git_env
    from runyard.git.remote import remote_config

    s = Settings(git_base_url="https://git.example", git_token="tok")
    own = remote_config(parse_repo("acme/w", s), s, [])
    assert own["http.extraHeader"].startswith("Authorization: Basic ")
    theirs = remote_config(parse_repo("https://h.example/o/r.git", s), s, ["93.184.215.14"])
    assert "http.extraHeader" not in theirs  # the token never goes to a client's host
    assert theirs["http.curloptResolve"] == "h.example:443:93.184.215.14"
    ssh = remote_config(parse_repo("git@h.example:o/r.git", s), s, ["93.184.215.14"])
    assert "IdentityAgent=none" in ssh["core.sshCommand"]
    assert "HostName=93.184.215.14" in ssh["core.sshCommand"]
    env = git_env("https:ssh", ssh)
    assert env["GIT_SSH_COMMAND"] == ssh["core.sshCommand"]
    assert env["GIT_CONFIG_GLOBAL"] == "/dev/null" and env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert "tok" not in " ".join(env.values())
