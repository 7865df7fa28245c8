"""The store hash in a worker's identity (runyard/worker_identity.py)."""

from __future__ import annotations

import os
from pathlib import Path

from runyard.settings import Settings
from runyard.worker_identity import STORE_TAG, store_hash, worker_identity


def test_the_hash_ignores_the_password_and_names_the_store() -> None:
    pg = "postgresql+psycopg://runyard:{}@db:5432/runyard"
    assert store_hash(pg.format("one")) == store_hash(pg.format("two"))
    assert store_hash(pg.format("one")) != store_hash(pg.format("one").replace("/runyard", "/x"))


def test_a_relative_sqlite_path_is_the_file_it_names(tmp_path: Path) -> None:
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        relative = store_hash("sqlite+aiosqlite:///data/runyard.db")
    finally:
        os.chdir(here)
    assert relative == store_hash(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'runyard.db'}")


def test_the_identity_carries_the_hash(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert worker_identity(settings).endswith(STORE_TAG + store_hash(settings.db_url))
