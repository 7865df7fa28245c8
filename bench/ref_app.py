"""The reference for get-run in bench/api.py: a minimal FastAPI app doing the same job.

It authenticates the same bearer key against the same store (the SHA-256 of the key
looked up in ``api_keys``; a valid key remembered for as long as the API remembers
one, ``RUNYARD_API_KEY_CACHE_SECONDS``, 10 s by default) and reads the same ``runs``
row by id and organization, with plain SQL on the store's synchronous driver in a
thread pool of the API's size (2 threads), and returns the row as JSON. No ORM, no
middleware, no problem documents: what a hand-written service would pay for the read.

    RUNYARD_DATABASE_URL=... uvicorn bench.ref_app:app --log-level warning
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request

_URL = os.environ.get("RUNYARD_DATABASE_URL", "")
_TTL = float(os.environ.get("RUNYARD_API_KEY_CACHE_SECONDS", "10"))
_pool = ThreadPoolExecutor(2, thread_name_prefix="ref-db")
_local = threading.local()
_keys: dict[str, tuple[float, str]] = {}
_PG = _URL.startswith("postgresql")
_P = "%s" if _PG else "?"
_KEY_SQL = f"SELECT org_id, revoked_at, expires_at FROM api_keys WHERE key_hash = {_P}"
_RUN_SQL = f"SELECT * FROM runs WHERE id = {_P} AND org_id = {_P}"


def _conn() -> Any:
    conn = getattr(_local, "conn", None)
    if conn is None:
        if _PG:
            import psycopg

            conn = psycopg.connect(_URL, autocommit=True)
        else:
            import sqlite3

            conn = sqlite3.connect(_URL.split("///", 1)[1], isolation_level=None)
            conn.execute("PRAGMA busy_timeout=30000")
        _local.conn = conn
    return conn


def _query(sql: str, params: tuple[Any, ...]) -> tuple[list[str], tuple[Any, ...] | None]:
    cur = _conn().execute(sql, params)
    row = cur.fetchone()
    return [d[0] for d in cur.description], row


async def _run(sql: str, *params: Any) -> tuple[list[str], tuple[Any, ...] | None]:
    return await asyncio.get_running_loop().run_in_executor(_pool, _query, sql, params)


def _live(revoked: Any, expires: Any) -> bool:
    if revoked is not None:
        return False
    if expires is None:
        return True
    if isinstance(expires, str):
        expires = datetime.fromisoformat(expires)
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return bool(expires > datetime.now(UTC))


app = FastAPI()


@app.get("/v1/runs/{run_id}")
async def get_run(run_id: str, request: Request) -> dict[str, Any]:
    scheme, _, raw = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw:
        raise HTTPException(401)
    key_hash = hashlib.sha256(raw.encode()).hexdigest()
    cached = _keys.get(key_hash)
    if cached is not None and cached[0] > time.monotonic():
        org_id = cached[1]
    else:
        _, key = await _run(_KEY_SQL, key_hash)
        if key is None or not _live(key[1], key[2]):
            raise HTTPException(401)
        org_id = key[0]
        if _TTL > 0:
            _keys[key_hash] = (time.monotonic() + _TTL, org_id)
    names, row = await _run(_RUN_SQL, run_id, org_id)
    if row is None:
        raise HTTPException(404)
    return dict(zip(names, row, strict=True))
