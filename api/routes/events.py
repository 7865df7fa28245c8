"""A run's events: the live SSE stream, JSON pages, JSONL logs and filtered session logs."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from api.deps import DbDep, KnownQueryOnly, ReaderDep
from api.errors import ProblemError
from api.responses import AUTHENTICATED, operation_id, problems
from api.routes.runs import load_run
from api.run_factory import invalid
from api.schemas import Timestamp
from api.streams import LeasedStream, StreamCaps
from runyard import metrics
from runyard.db.tables import Run
from runyard.domain import TERMINAL_EVENT_TYPES, EventType
from runyard.events import Event
from runyard.notifier import EventNotifier, nothing_more, run_state
from runyard.store.events import event_json, first_seq, list_events

router = APIRouter(
    generate_unique_id_function=operation_id,
    prefix="/v1/runs",
    tags=["events"],
    responses=AUTHENTICATED,
)
_BATCH = 500
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


# The largest cursor either way in: far above any run's seq, and within the store's
# 64-bit integers (a bigger one reached SQLite as an OverflowError mid-stream).
MAX_SEQ = 2**62


def _cursor(after_seq: int | None, last_event_id: str | None) -> int:
    if after_seq is not None:
        return after_seq
    if last_event_id is None or last_event_id.strip() == "":
        return 0
    raw = last_event_id.strip()
    if raw.startswith("-") and raw[1:].isdecimal():
        raise invalid("Last-Event-ID", "must not be negative", "greater_than_equal")
    # Plain ASCII digits, as the stream sends them (int() would also take "+1", "1_0"
    # and other scripts' digits).
    if not (raw.isascii() and raw.isdecimal()):
        raise invalid("Last-Event-ID", "must be an event seq (a whole number)")
    value = int(raw)
    if value > MAX_SEQ:
        raise invalid("Last-Event-ID", f"must be at most {MAX_SEQ}", "less_than_equal")
    return value


def _types(raw: str | None, field: str) -> list[str] | None:
    if raw is None:
        return None
    wanted = [t.strip() for t in raw.split(",") if t.strip()]
    unknown = sorted(set(wanted) - set(EventType))
    if unknown:
        raise invalid(field, f"unknown event type(s) {', '.join(unknown)}", "enum")
    return wanted


async def _check_retention(
    read: Callable[[Callable[[Session], int | None]], Awaitable[int | None]], run: Run, cursor: int
) -> None:
    """410 when the events right after ``cursor`` were purged by retention."""
    if cursor >= run.last_seq:
        return
    first = await read(partial(first_seq, run_id=run.id))
    if first is None or first > cursor + 1:
        raise ProblemError(
            410,
            "EVENTS_EXPIRED",
            f"events after seq {cursor} of {run.id} are older than the retention window",
            title="Events expired",
        )


async def _stream(notifier: EventNotifier, run_id: str, cursor: int) -> AsyncIterator[bytes]:
    """Stored events after ``cursor``, then live ones, until the terminal event (or
    until the server stops). Its store
    reads go through the hub (one seed per run, then a gate for the process's streams)."""
    sub = notifier.subscribe(run_id)
    check_status = True  # on the first pass (then the hub's pings look, once per run)
    quiet = True  # no event was sent since the hub's last ping
    opened = time.time()  # events committed since are live: their delivery lag is measured
    metrics.SSE_STREAMS.inc()
    try:
        yield b": connected\n\n"
        while not notifier.closing:  # the server is stopping: end, the client resumes
            sub.clear()
            batch = sub.cached(cursor)
            if batch is None:  # the run's tail is not seeded yet: the first stream seeds it
                await notifier.seed(run_id)
                batch = sub.cached(cursor)
            if batch is None:  # behind the hub's tail: the store
                batch = await notifier.events_after(run_id, cursor)
            if batch:
                # One write per wake, however many events it brought: with hundreds of
                # streams the per-write cost, not the bytes, is what the process spends.
                end = next(
                    (i for i, ev in enumerate(batch) if ev.type in TERMINAL_EVENT_TYPES), None
                )
                send = batch if end is None else batch[: end + 1]
                cursor = send[-1].seq
                quiet = False
                yield b"".join(ev.frame for ev in send)
                metrics.events_delivered((ev.created for ev in send), opened)
                if end is not None:
                    return
                continue
            if check_status:
                state = await notifier.read_core(partial(run_state, run_id=run_id))
                if nothing_more(state, cursor):
                    return  # the client already has the terminal event
            check_status = False
            if not await sub.wait():  # the hub's ping: at least one comment per interval
                yield b": ping\n\n"
                if quiet and sub.ended(cursor):  # no event for a whole interval, and
                    return  # the run is gone or the client has its terminal event
                quiet = True
    finally:
        metrics.SSE_STREAMS.dec()
        sub.close()


@router.get(
    "/{run_id}/events",
    summary="The run's events: SSE, or a JSON array with Accept: application/json",
    dependencies=[KnownQueryOnly],
    response_model=list[Event],  # the schema: one model per type (runyard/events)
    responses={
        **problems(400, 404, 410),
        200: {
            "description": "Server-sent events (text/event-stream): `id: <seq>`, "
            "`event: <type>`, `data: <the event as JSON>`; with `Accept: application/json` "
            "the events as a JSON array",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
    },
)
async def run_events(
    run_id: str,
    request: Request,
    principal: ReaderDep,
    db: DbDep,
    after_seq: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> Response:
    cursor = _cursor(after_seq, last_event_id)
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "text/event-stream" not in accept:
        run = await load_run(db, principal.org_id, run_id)
        await _check_retention(db.read, run, cursor)
        async with db.session() as s:
            events = await list_events(s, run_id, after_seq=cursor, limit=limit)
        return JSONResponse([event_json(e) for e in events])
    # A stream past a cap is refused before it reads anything (api/streams.py).
    caps: StreamCaps = request.app.state.stream_caps
    lease = caps.acquire(principal)
    notifier: EventNotifier = request.app.state.notifier
    try:
        run = await load_run(db, principal.org_id, run_id)
        await _check_retention(notifier.read, run, cursor)
    except BaseException:
        lease.release()
        raise
    return LeasedStream(
        lease,
        _stream(notifier, run_id, cursor),
        media_type="text/event-stream",
        headers=_SSE_HEADERS,
    )


@router.get(
    "/{run_id}/logs",
    summary="All events as JSON lines (application/x-ndjson)",
    response_class=StreamingResponse,
    responses={
        **problems(404),
        200: {
            "description": "One event a line, as JSON",
            "content": {"application/x-ndjson": {"schema": {"type": "string", "format": "binary"}}},
        },
    },
)
async def run_logs(run_id: str, principal: ReaderDep, db: DbDep) -> StreamingResponse:
    await load_run(db, principal.org_id, run_id)

    async def lines() -> AsyncIterator[bytes]:
        cursor = 0
        while True:  # in pages, so a long run's log never sits in memory at once
            async with db.session() as s:
                events = await list_events(s, run_id, after_seq=cursor, limit=_BATCH)
            for ev in events:
                yield (json.dumps(event_json(ev), separators=(",", ":")) + "\n").encode()
            if len(events) < _BATCH:
                return
            cursor = events[-1].seq

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get(
    "/{run_id}/session-logs",
    summary="Events as a JSON array, filtered",
    dependencies=[KnownQueryOnly],
    response_model=list[Event],  # the schema: one model per type (runyard/events)
    responses=problems(400, 404),
)
async def session_logs(
    run_id: str,
    principal: ReaderDep,
    db: DbDep,
    after: Annotated[Timestamp | None, Query(description="only events after this time")] = None,
    event_types: Annotated[str | None, Query(alias="eventTypes", max_length=2000)] = None,
    exclude_types: Annotated[str | None, Query(alias="excludeTypes", max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    await load_run(db, principal.org_id, run_id)
    async with db.session() as s:
        events = await list_events(
            s,
            run_id,
            limit=limit,
            after_time=after,
            types=_types(event_types, "eventTypes"),
            exclude_types=_types(exclude_types, "excludeTypes"),
        )
    # As stored, like /events: the models describe the events, they do not rewrite them.
    return JSONResponse([event_json(e) for e in events])
