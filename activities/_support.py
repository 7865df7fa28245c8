"""What the activities share: the bound logger and a background heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from temporalio import activity


def logger(run_id: str, **kw: Any) -> Any:
    info = activity.info()
    return structlog.get_logger("runyard.activity").bind(
        run_id=run_id,
        workflow_id=info.workflow_id,
        activity=info.activity_type,
        attempt=info.attempt,
        **kw,
    )


@contextlib.asynccontextmanager
async def heartbeating(interval: float = 1.0) -> AsyncIterator[None]:
    """Heartbeat in the background, so a cancel reaches an activity blocked on I/O."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
