"""``runyard status``: the stack's health on one screen, for an operator at a terminal.

Database, Temporal, the workers polling the task queue, the API's ``/healthz``; then the
open runs by status, the run waiting longest for an answer, and the webhook backlog. It
reads the settings every command reads (``--data-dir`` / ``RUNYARD_DATA_DIR``,
``RUNYARD_DATABASE_URL``, ``TEMPORAL_ADDRESS``, ``RUNYARD_TASK_QUEUE``) and never writes:
no migration, no store created. Exits 1 when any of the four is down.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import httpx
import typer
from pydantic import BaseModel, ValidationError

from runyard.client import DEFAULT_API_URL
from runyard.client._core import is_json, not_runyard
from runyard.settings import Settings

_TIMEOUT = 3.0
# A worker polls continuously; one not seen for this long is gone.
_POLLER_FRESH = timedelta(minutes=2)


@dataclass
class Report:
    checks: dict[str, tuple[bool, str]] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)
    oldest_waiting: tuple[str, timedelta] | None = None
    oldest_queued: tuple[str, timedelta] | None = None
    webhooks_pending: int = 0
    oldest_webhook: timedelta | None = None

    @property
    def ok(self) -> bool:
        return all(ok for ok, _ in self.checks.values())


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


def _reason(exc: BaseException) -> str:
    """A short why: the SDK's connection errors are long Rust debug strings."""
    text = str(exc)
    for hint in ("connection refused", "timed out", "dns error", "certificate"):
        if hint in text.lower():
            return hint
    return text.splitlines()[0][:80] if text else type(exc).__name__


def _since(when: datetime, now: datetime) -> timedelta:
    return now - (when if when.tzinfo else when.replace(tzinfo=UTC))


async def _database(settings: Settings, report: Report) -> None:
    from sqlalchemy import func, select
    from sqlmodel import col

    from cli.accounts import _store_exists
    from runyard.db.engine import Database
    from runyard.db.tables import Run, WebhookDelivery
    from runyard.domain import OPEN_STATUSES, RunStatus

    where = (settings.database_url and "RUNYARD_DATABASE_URL") or str(settings.data_dir.resolve())
    try:
        exists = await asyncio.to_thread(_store_exists, settings.db_url)
    except Exception as exc:
        report.checks["database"] = (False, f"unreachable: {exc}".splitlines()[0])
        return
    if not exists:
        report.checks["database"] = (False, f"no Runyard store at {where}")
        return
    db = Database(settings.db_url)
    now = datetime.now(UTC)
    try:
        async with asyncio.timeout(_TIMEOUT * 2), db.session() as s:
            rows = await s.execute(
                select(col(Run.status), func.count())
                .where(col(Run.status).in_(list(OPEN_STATUSES)))
                .group_by(col(Run.status))
            )
            report.runs = {str(status): int(n) for status, n in rows.all()}
            for status, attr in (
                (RunStatus.WAITING_FOR_INPUT, "oldest_waiting"),
                (RunStatus.QUEUED, "oldest_queued"),
            ):
                oldest = (
                    await s.execute(
                        select(col(Run.id), col(Run.updated_at))
                        .where(col(Run.status) == status)
                        .order_by(col(Run.updated_at))
                        .limit(1)
                    )
                ).first()
                if oldest is not None:
                    setattr(report, attr, (oldest[0], _since(oldest[1], now)))
            pending = (
                await s.execute(
                    select(func.count(), func.min(col(WebhookDelivery.created_at))).where(
                        col(WebhookDelivery.status) == "pending"
                    )
                )
            ).one()
            report.webhooks_pending = int(pending[0])
            if pending[1] is not None:
                report.oldest_webhook = _since(pending[1], now)
        report.checks["database"] = (True, f"ok ({where})")
    except Exception as exc:
        report.checks["database"] = (False, f"error: {type(exc).__name__}: {exc}".splitlines()[0])
    finally:
        await db.dispose()


async def _temporal(settings: Settings, report: Report) -> None:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    from runyard.temporal import connect

    try:
        async with asyncio.timeout(_TIMEOUT):
            client = await connect(settings)
            await client.service_client.check_health()
    except Exception as exc:
        report.checks["temporal"] = (False, f"down at {settings.temporal_address} ({_reason(exc)})")
        report.checks["worker"] = (False, "unknown: Temporal is down")
        return
    report.checks["temporal"] = (True, f"ok ({settings.temporal_address})")
    try:
        async with asyncio.timeout(_TIMEOUT):
            described = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=settings.temporal_namespace,
                    task_queue=TaskQueue(name=settings.task_queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
    except Exception as exc:
        report.checks["worker"] = (False, f"unknown: {exc}")
        return
    now = datetime.now(UTC)
    fresh = [
        p
        for p in described.pollers
        if now - p.last_access_time.ToDatetime(tzinfo=UTC) < _POLLER_FRESH
    ]
    if fresh:
        names = ", ".join(sorted({p.identity for p in fresh}))
        report.checks["worker"] = (True, f"{len(fresh)} polling '{settings.task_queue}' ({names})")
    else:
        report.checks["worker"] = (False, f"none polling task queue '{settings.task_queue}'")


class _Health(BaseModel):
    """The body of the API's ``/healthz`` (``api/responses_org.py``'s ``Health``)."""

    status: str
    database: str
    temporal: str


async def _api(api_url: str, report: Report) -> None:
    url = f"{api_url.rstrip('/')}/healthz"
    try:
        async with httpx.AsyncClient(timeout=_TIMEOUT) as c:
            resp = await c.get(url)
    except httpx.HTTPError as exc:
        report.checks["api"] = (False, f"down at {api_url} ({type(exc).__name__})")
        return
    # Any server answers 200 somewhere: only Runyard's own /healthz document (JSON, with
    # its status and parts) says this is the API, as the client commands check.
    try:
        health = _Health.model_validate(resp.json()) if is_json(resp) else None
    except (ValueError, ValidationError):
        health = None
    if health is None:
        why = not_runyard(resp, "Runyard's health document").detail
        report.checks["api"] = (False, f"not a Runyard API: {why}")
        return
    if resp.status_code == 200 and health.status == "ok":
        report.checks["api"] = (True, f"ok ({api_url})")
        return
    detail = f"database {health.database}, temporal {health.temporal}"
    report.checks["api"] = (False, f"{resp.status_code} at {api_url}: {detail}")


def render(report: Report) -> str:
    from runyard.domain import OPEN_STATUSES

    lines = ["Runyard status", ""]
    for name in ("database", "temporal", "worker", "api"):
        ok, text = report.checks.get(name, (False, "not checked"))
        lines.append(f"  {name:<10} {'up  ' if ok else 'DOWN'}  {text}")
    lines += ["", "Open runs"]
    if not report.checks.get("database", (False, ""))[0]:
        lines.append("  unknown: the database is down")
        return "\n".join(lines)
    order = ["queued", "pending", "running", "waiting_for_input"]
    for status in [s for s in order if s in OPEN_STATUSES]:
        lines.append(f"  {status:<18} {report.runs.get(status, 0)}")
    if report.oldest_waiting:
        run_id, age = report.oldest_waiting
        lines.append(f"  oldest waiting for input: {run_id}, {_age(age)}")
    if report.oldest_queued:
        run_id, age = report.oldest_queued
        lines.append(f"  oldest queued: {run_id}, {_age(age)}")
    lines += ["", "Webhooks"]
    pending = f"  pending deliveries: {report.webhooks_pending}"
    if report.oldest_webhook is not None:
        pending += f" (oldest {_age(report.oldest_webhook)})"
    lines.append(pending)
    return "\n".join(lines)


async def collect(settings: Settings, api_url: str) -> Report:
    report = Report()
    await asyncio.gather(
        _database(settings, report), _temporal(settings, report), _api(api_url, report)
    )
    return report


def register(app: typer.Typer) -> None:
    @app.command()
    def status(
        data_dir: Annotated[
            Path | None,
            typer.Option(help="Where the store is (default: RUNYARD_DATA_DIR, or .runyard)."),
        ] = None,
        api_url: Annotated[
            str, typer.Option("--api-url", envvar="RUNYARD_API_URL", help="The Runyard API.")
        ] = DEFAULT_API_URL,
    ) -> None:
        """The stack's health, open runs, the oldest waiting run and the webhook backlog;
        exits 1 when the database, Temporal, the worker or the API is down."""
        from cli.accounts import store_settings

        report = asyncio.run(collect(store_settings(data_dir), api_url))
        typer.echo(render(report))
        if not report.ok:
            raise typer.Exit(1)
