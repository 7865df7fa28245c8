"""Connection tokens' claims and paths, and the generated secret's file."""

from __future__ import annotations

import os
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from api.errors import ProblemError
from api.tokens import AUDIENCE, issue_token, token_opens, verify_token
from runyard.datadir import operator_umask, private_data_dir
from runyard.secrets import load_secret_key
from runyard.settings import Settings
from runyard.store.orgs import DelegationRefused, delegated_expiry

SECRET = b"s" * 48


def test_token_opens_only_its_runs_listed_paths() -> None:
    run = "run_abc"
    for method, path in [
        ("GET", "/v1/runs/run_abc"),
        ("GET", "/v1/runs/run_abc/status"),
        ("GET", "/v1/runs/run_abc/events"),
        ("GET", "/v1/runs/run_abc/logs"),
        ("GET", "/v1/runs/run_abc/session-logs"),
        ("GET", "/v1/runs/run_abc/artifacts"),
        ("POST", "/v1/runs/run_abc/input"),
        ("POST", "/v1/runs/run_abc/command"),
    ]:
        assert token_opens(method, path, run), (method, path)
    for method, path in [
        ("GET", "/v1/runs/run_abd"),
        ("GET", "/v1/runs/run_abcd/status"),
        ("GET", "/v1/runs"),
        ("POST", "/v1/runs/run_abc"),
        ("DELETE", "/v1/runs/run_abc"),
        ("POST", "/v1/runs/run_abc/exec"),
        ("POST", "/v1/runs/run_abc/cancel"),
        ("POST", "/v1/runs/run_abc/watch"),
        ("GET", "/v1/runs/run_abc/input"),
        ("GET", "/v1/runs/run_abc/connection-token"),
        ("POST", "/v1/runs/run_abc/artifacts/presign"),
        ("GET", "/v1/runs/run_abc/artifacts/art_1"),
        ("GET", "/v1/runs/run_abc/events/x"),
        ("GET", "/v1/usage"),
        ("GET", "/v1/threads/run_abc"),
    ]:
        assert not token_opens(method, path, run), (method, path)


def test_tokens_verify_strictly() -> None:
    scopes = frozenset({"runs:read", "runs:write", "admin"})
    token, expires = issue_token(
        SECRET, run_id="run_a", org_id="org_a", key_id="key_a", scopes=scopes
    )
    claims = verify_token(SECRET, token)
    assert (claims.run_id, claims.org_id, claims.key_id) == ("run_a", "org_a", "key_a")
    assert claims.scopes == {"runs:read", "runs:write"}  # never admin
    assert timedelta(hours=23, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=24)
    now = datetime.now(UTC)
    good = {"sub": "run_a", "run": "run_a", "org": "o", "key": "k", "aud": AUDIENCE, "iat": now}
    bad = [
        jwt.encode(good | {"exp": now - timedelta(seconds=1)}, SECRET, algorithm="HS256"),
        jwt.encode(good | {"exp": now + timedelta(hours=1)}, b"x" * 48, algorithm="HS256"),
        jwt.encode(good | {"exp": now + timedelta(hours=1), "aud": "other"}, SECRET),
        jwt.encode(good | {"exp": now + timedelta(hours=1), "sub": "run_b"}, SECRET),
        jwt.encode(good, SECRET),  # no exp
        jwt.encode(good | {"exp": now + timedelta(hours=1)}, None, algorithm="none"),  # type: ignore[arg-type]
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        "a.b.c",
    ]
    for forged in bad:
        with pytest.raises(ProblemError) as err:
            verify_token(SECRET, forged)
        assert err.value.status == 401 and err.value.code == "API_KEY_INVALID"


def test_secret_is_generated_once_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    first = load_secret_key(settings)
    path = tmp_path / "d" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first) >= 32
    assert load_secret_key(Settings(data_dir=tmp_path / "d")) == first
    assert list((tmp_path / "d").iterdir()) == [path]  # no temporary file left behind
    given = Settings(data_dir=tmp_path / "e", secret_key="k" * 40)
    assert load_secret_key(given) == b"k" * 40 and not (tmp_path / "e").exists()
    with pytest.raises(ValueError, match="at least 32"):
        load_secret_key(Settings(data_dir=tmp_path, secret_key="short"))


def test_delegated_keys_stay_within_their_creator() -> None:
    """Issue 23, item 7: scopes within the creator's (admin implies all), expiry no later."""
    t = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(DelegationRefused, match="runs:write"):
        delegated_expiry(
            ["runs:read", "runs:write"], None, creator_scopes=["runs:read"], creator_expires_at=None
        )
    admin_until_t = {"creator_scopes": ["admin"], "creator_expires_at": t}
    assert delegated_expiry(["runs:write"], None, **admin_until_t) == t  # type: ignore[arg-type]
    with pytest.raises(DelegationRefused, match="expiresAt"):
        delegated_expiry(["admin"], t + timedelta(days=1), **admin_until_t)  # type: ignore[arg-type]
    assert delegated_expiry(["admin"], t, creator_scopes=["admin"], creator_expires_at=None) == t


def test_a_data_dir_is_made_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23, item 8: an existing data dir (and what an older version left in it,
    artifacts included) loses group and other permissions; new files are 0600. The
    operator's umask is kept for what is written outside it (a local repository)."""
    monkeypatch.setattr("runyard.datadir._operator_umask", None)
    data = tmp_path / "data"
    (data / "artifacts" / "run_x").mkdir(parents=True)
    for p in (data / "runyard.db", data / "artifacts" / "run_x" / "a.txt"):
        p.write_text("x")
        p.chmod(0o644)
    for d in (data / "artifacts" / "run_x", data / "artifacts", data):
        d.chmod(0o755)
    old = os.umask(0o022)
    try:
        private_data_dir(data)
        private_data_dir(data)  # again: the operator's umask is still the first one
        assert operator_umask() == 0o022
        (data / "new.log").write_text("x")
        assert stat.S_IMODE((data / "new.log").stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "runyard.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "artifacts" / "run_x" / "a.txt").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "artifacts" / "run_x").stat().st_mode) == 0o700
    # A data dir that is a symlink (to a bigger disk): the directory it names is made 0700.
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    (tmp_path / "link").symlink_to(target)
    old = os.umask(0o022)
    try:
        private_data_dir(tmp_path / "link")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_runyard_devs_children_start_with_the_operators_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`runyard dev` is private (umask 077) before it starts the worker and the API; they
    get the operator's umask, make themselves private, and keep the operator's for what
    they write outside the data dir (a push into a local repository)."""
    from cli.dev import _spawn

    monkeypatch.setattr("runyard.datadir._operator_umask", 0o022)
    seen = tmp_path / "umask"
    code = f"import os; open({str(seen)!r}, 'w').write(oct(os.umask(0)))"
    old = os.umask(0o077)
    try:
        assert _spawn([sys.executable, "-c", code], dict(os.environ)).wait(timeout=30) == 0
    finally:
        os.umask(old)
    assert seen.read_text() == "0o22"
