"""What the activities share: the bound logger, a background heartbeat, and the one
boundary where Runyard's errors become the failures Temporal sees."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from runyard.errors import RunyardError

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def logger(run_id: str, **kw: Any) -> Any:
    info = activity.info()
    return structlog.get_logger("runyard.activity").bind(
        run_id=run_id,
        workflow_id=info.workflow_id,
        activity=info.activity_type,
        attempt=info.attempt,
        **kw,
    )


def typed_failures(fn: F) -> F:
    """Raise a ``RunyardError`` as the ``ApplicationError`` of its code, retryable or not
    as its class declares (``runyard/errors.py``). Anything else stays retryable.

    These are the expected ways a run ends (a model error, a sandbox over its memory …):
    they log one line here and are marked benign, so the SDK does not log a traceback."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except RunyardError as exc:
            info = activity.info()
            structlog.get_logger("runyard.activity").warning(
                "activity.failed",
                run_id=info.workflow_id,
                workflow_id=info.workflow_id,
                activity=info.activity_type,
                attempt=info.attempt,
                code=exc.code,
                retryable=exc.should_retry,
                error=str(exc),
            )
            raise ApplicationError(
                str(exc) or type(exc).__name__,
                type=exc.code,
                non_retryable=not exc.should_retry,
                category=ApplicationErrorCategory.BENIGN,
            ) from exc

    return cast(F, wrapper)


def heartbeats(fn: F) -> F:
    """Heartbeat for the whole activity, every second from its first: waiting for the store
    under load must not look like a dead worker to Temporal, and a cancel reaches the
    activity while it waits on I/O. An activity done within its first second sends none:
    each heartbeat is a call to Temporal and a write of its store."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        async with heartbeating():
            return await fn(*args, **kwargs)

    return cast(F, wrapper)


@contextlib.asynccontextmanager
async def heartbeating(interval: float = 1.0) -> AsyncIterator[None]:
    async def beat() -> None:
        while True:
            await asyncio.sleep(interval)
            activity.heartbeat()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
