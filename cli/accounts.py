"""``runyard keys …`` and ``runyard credits …``: the operator's side of keys and credits.

Each command opens the store of ``--data-dir`` (or ``RUNYARD_DATA_DIR`` /
``RUNYARD_DATABASE_URL``). A store that does not exist is an error, said in one line, so
a command run from the wrong directory never makes a new, empty store that the server
does not read; ``keys create --init`` is the explicit way to create one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from runyard.settings import Settings

if TYPE_CHECKING:
    from runyard.db.engine import Database

T = TypeVar("T")

keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
credits_app = typer.Typer(help="Credits (off until granted; 1 credit = $0.001).")

DataDir = Annotated[
    Path | None,
    typer.Option(help="Where the store is (default: RUNYARD_DATA_DIR, or .runyard)."),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def store_settings(data_dir: Path | None) -> Settings:
    """The settings of this command: the environment's, with ``--data-dir`` over it."""
    return Settings(data_dir=data_dir) if data_dir is not None else Settings()


def _store_exists(url: str) -> bool:
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url

    from runyard.db.sqlite import sync_url

    if url.startswith("sqlite"):
        path = make_url(url).database
        return bool(path) and path != ":memory:" and Path(path or "").is_file()
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return inspect(conn).has_table("alembic_version")
    finally:
        engine.dispose()


def with_store(
    settings: Settings, fn: Callable[[Database], Awaitable[T]], *, init: bool = False
) -> T:
    """Run ``fn(db)`` on the store, brought to the newest schema; fail in one line if absent."""
    from runyard.db.engine import Database, migrate

    url = settings.db_url
    where = (settings.database_url and "RUNYARD_DATABASE_URL") or settings.data_dir.resolve()
    try:
        if not init and not _store_exists(url):
            raise fail(
                f"no Runyard store at {where}: start 'runyard dev' there, pass --data-dir, "
                "or create one with 'runyard keys create --init'"
            )
        migrate(url)
    except typer.Exit:
        raise
    except Exception as exc:
        raise fail(f"cannot open the store at {where}: {exc}".splitlines()[0]) from exc

    async def go() -> T:
        db = Database(url)
        try:
            return await fn(db)
        finally:
            await db.dispose()

    return asyncio.run(go())


def _ts(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else "-"


def _scopes(raw: str) -> list[str]:
    from runyard.store.orgs import ALL_SCOPES

    wanted = [s.strip() for s in raw.split(",") if s.strip()]
    bad = [s for s in wanted if s not in ALL_SCOPES]
    if bad or not wanted:
        raise fail(f"unknown scope(s) {', '.join(bad) or '(none)'}; use {', '.join(ALL_SCOPES)}", 2)
    return wanted


@keys_app.command("create")
def keys_create(
    org: Annotated[str, typer.Option(help="Organization name or id (created if needed).")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated: runs:read,runs:write,admin.")
    ] = "runs:read,runs:write",
    name: Annotated[str | None, typer.Option(help="A name to recognise the key by.")] = None,
    expires_at: Annotated[
        datetime | None,
        typer.Option(
            help="When the key stops working, e.g. 2027-01-01T00:00:00Z (UTC if no zone).",
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"],
        ),
    ] = None,
    data_dir: DataDir = None,
    init: Annotated[bool, typer.Option("--init", help="Create the store if there is none.")] = (
        False
    ),
) -> None:
    """Create an API key; prints the key alone on stdout."""
    from datetime import UTC

    from runyard.store.orgs import create_key, ensure_org

    wanted = _scopes(scopes)
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise fail("--expires-at must be in the future", 2)

    async def create(db: Database) -> str:
        async with db.write() as s:
            o = await ensure_org(s, org)
            raw, _ = await create_key(s, o.id, wanted, name=name, expires_at=expires_at)
        return raw

    typer.echo(with_store(store_settings(data_dir), create, init=init))


@keys_app.command("list")
def keys_list(
    org: Annotated[str, typer.Option(help="Organization name or id.")],
    data_dir: DataDir = None,
) -> None:
    """List an organization's live keys: id, name, prefix, scopes, dates (never the key)."""
    from sqlalchemy import select
    from sqlmodel import col

    from runyard.db.tables import ApiKey
    from runyard.store.orgs import find_org

    async def rows(db: Database) -> list[ApiKey] | None:
        async with db.session() as s:
            o = await find_org(s, org)
            if o is None:
                return None
            query = (
                select(ApiKey)
                .where(col(ApiKey.org_id) == o.id, col(ApiKey.revoked_at).is_(None))
                .order_by(col(ApiKey.created_at))
            )
            return list((await s.execute(query)).scalars())

    keys = with_store(store_settings(data_dir), rows)
    if keys is None:
        raise fail(f"no organization '{org}'")
    typer.echo("id\tname\tprefix\tscopes\tcreated\texpires\tlast used")
    for k in keys:
        fields = [k.id, k.name or "-", k.prefix, ",".join(k.scopes or [])]
        fields += [_ts(k.created_at), _ts(k.expires_at), _ts(k.last_used_at)]
        typer.echo("\t".join(fields))


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…), as keys list shows.")],
    data_dir: DataDir = None,
) -> None:
    """Revoke a key: every API process refuses it within RUNYARD_API_KEY_CACHE_SECONDS."""
    from runyard.store.orgs import revoke_key

    async def revoke(db: Database) -> bool:
        async with db.write() as s:
            return await revoke_key(s, key_id) is not None

    if not with_store(store_settings(data_dir), revoke):
        raise fail(f"no live API key {key_id}")
    typer.echo(f"revoked {key_id}")


@credits_app.command("grant")
def credits_grant(
    org: Annotated[str, typer.Option(help="Organization name or id.")],
    amount: Annotated[int, typer.Argument(min=1, help="Credits to add (1 credit = $0.001).")],
    data_dir: DataDir = None,
) -> None:
    """Add credits to an organization (turning credits on for it); prints the new balance."""
    from runyard.store.credits import grant
    from runyard.store.orgs import find_org

    async def add(db: Database) -> int | None:
        async with db.write() as s:
            o = await find_org(s, org)
            if o is None:
                return None
            org_id = o.id
            return await s.run_sync(lambda sync: grant(sync, org_id, amount))

    balance = with_store(store_settings(data_dir), add)
    if balance is None:
        raise fail(f"no organization '{org}'")
    typer.echo(balance)
