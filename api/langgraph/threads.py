"""``/lg/threads``: Runyard threads with LangGraph's state, checkpoints and history."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from sqlmodel import col

from api.errors import ProblemError
from api.langgraph.bodies import (
    MAX_METADATA_BYTES,
    HistoryBody,
    StateCheckpointBody,
    ThreadCreate,
    ThreadPatch,
    ThreadSearch,
    parse,
)
from api.langgraph.deps import ExtDep, LgReader, LgWriter
from api.langgraph.hooks import Baseline
from api.langgraph.mapping import GRAPH_ID
from api.langgraph.views import History, project, read_thread, thread_object, thread_runs
from api.ownership import load_owned
from runyard.db.engine import Database
from runyard.db.tables import Run, Thread
from runyard.db.types import utcnow
from runyard.domain import OPEN_STATUSES, ErrorCode
from runyard.errors import InvalidInput, NotServed
from runyard.ids import new_id

router = APIRouter()
_SCAN = 500  # threads read per page while a search filters


async def load_thread(db: Database, org_id: str, thread_id: str) -> Thread:
    return await load_owned(db, Thread, org_id, thread_id, "thread")


def tag_thread(s: Session, thread_id: str, assistant_id: str) -> None:
    """A thread that runs an assistant carries ``graph_id`` and ``assistant_id`` in its
    metadata, as on LangGraph (agent-chat-ui lists its threads by ``graph_id``)."""
    thread = s.get(Thread, thread_id)
    if thread is None:
        return
    meta = dict(thread.metadata_ or {})
    if "graph_id" in meta and "assistant_id" in meta:
        return
    meta.setdefault("graph_id", GRAPH_ID)
    meta.setdefault("assistant_id", assistant_id)
    thread.metadata_ = meta
    s.add(thread)


@router.post("/threads")
async def create_thread(request: Request, principal: LgWriter, ext: ExtDep) -> dict[str, Any]:
    body = parse(ThreadCreate, await request.body())
    if body.thread_id is not None:
        raise NotServed("a thread_id chosen by the client: the server names threads (thr_…)")
    if body.supersteps:
        raise NotServed("supersteps: a thread starts empty")
    if body.ttl is not None:
        raise NotServed("ttl: threads are kept until deleted")
    metadata = dict(body.metadata or {})
    if body.graph_id:
        metadata["graph_id"] = body.graph_id
    now = utcnow()
    thread = Thread(
        id=new_id("thr"),
        org_id=principal.org_id,
        metadata_=metadata,
        created_at=now,
        updated_at=now,
    )
    db: Database = request.app.state.db
    async with db.write() as s:
        s.add(thread)
    return thread_object(thread, History(thread.id, {}, [], ext))


@router.get("/threads/{thread_id}")
async def get_thread(
    thread_id: str,
    request: Request,
    principal: LgReader,
    ext: ExtDep,
    include: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    if include:
        raise NotServed(f"include={include}")
    db: Database = request.app.state.db
    obj, _ = await read_thread(db, await load_thread(db, principal.org_id, thread_id), ext)
    return obj


@router.patch("/threads/{thread_id}", response_model=None)
async def patch_thread(
    thread_id: str, request: Request, principal: LgWriter, ext: ExtDep
) -> Response | dict[str, Any]:
    body = parse(ThreadPatch, await request.body())
    if body.ttl is not None:
        raise NotServed("ttl: threads are kept until deleted")
    db: Database = request.app.state.db
    await load_thread(db, principal.org_id, thread_id)

    def update(s: Session) -> Thread:
        thread = s.get(Thread, thread_id)
        assert thread is not None
        merged = {**(thread.metadata_ or {}), **body.metadata}  # merged, as LangGraph
        if len(json.dumps(merged)) > MAX_METADATA_BYTES:
            raise InvalidInput("the merged metadata is over 16 KiB of JSON", field="metadata")
        thread.metadata_ = merged
        thread.updated_at = utcnow()
        s.add(thread)
        return thread

    thread = await db.transact(update)
    if request.headers.get("prefer", "").replace(" ", "") == "return=minimal":
        return Response(status_code=204)
    obj, _ = await read_thread(db, thread, ext)
    return obj


@router.delete("/threads/{thread_id}", status_code=204)
async def delete_thread(thread_id: str, request: Request, principal: LgWriter) -> Response:
    """The thread goes; its runs stay (``/v1/runs`` still has them). A thread with an
    open run is not deleted: cancel the run first."""
    db: Database = request.app.state.db
    await load_thread(db, principal.org_id, thread_id)

    def remove(s: Session) -> None:
        busy = s.execute(
            select(col(Run.id)).where(
                col(Run.thread_id) == thread_id, col(Run.status).in_(list(OPEN_STATUSES))
            )
        ).scalar()
        if busy is not None:
            raise ProblemError(
                409, ErrorCode.CONFLICT, f"{thread_id} has an open run, {busy}: cancel it first"
            )
        s.execute(delete(Thread).where(col(Thread.id) == thread_id))

    await db.transact(remove)
    return Response(status_code=204)


def _search_page(
    s: Session, org_id: str, body: ThreadSearch, ext: Baseline
) -> list[dict[str, Any]]:
    order_col = {"thread_id": col(Thread.id), "updated_at": col(Thread.updated_at)}.get(
        body.sort_by or "created_at", col(Thread.created_at)
    )
    order = order_col.asc() if body.sort_order == "asc" else order_col.desc()
    stmt = select(Thread).where(col(Thread.org_id) == org_id)
    if body.ids:
        stmt = stmt.where(col(Thread.id).in_(body.ids))
    wanted, skipped, offset = body.offset + body.limit, 0, 0
    found: list[dict[str, Any]] = []
    while len(found) < body.limit:
        rows = list(s.scalars(stmt.order_by(order, col(Thread.id)).offset(offset).limit(_SCAN)))
        for thread in rows:
            meta = thread.metadata_ or {}
            if body.metadata and any(meta.get(k) != v for k, v in body.metadata.items()):
                continue
            obj = thread_object(thread, History.read(s, thread.id, thread_runs(s, thread.id), ext))
            if body.status is not None and obj["status"] != body.status:
                continue
            skipped += 1
            if skipped > body.offset:
                found.append(project(obj, body.select))
            if skipped >= wanted:
                break
        if len(rows) < _SCAN or skipped >= wanted:
            break
        offset += _SCAN
    return found


@router.post("/threads/search")
async def search_threads(
    request: Request, principal: LgReader, ext: ExtDep
) -> list[dict[str, Any]]:
    body = parse(ThreadSearch, await request.body())
    if body.values:
        raise NotServed("search by values; metadata, ids and status are served")
    if body.extract:
        raise NotServed("extract")
    if body.sort_by in ("status", "state_updated_at"):
        raise NotServed(f"sort_by {body.sort_by}; thread_id, created_at, updated_at are served")
    db: Database = request.app.state.db
    return await db.read(lambda s: _search_page(s, principal.org_id, body, ext))


# -- state and history ----------------------------------------------------------------


async def _history(request: Request, org_id: str, thread_id: str, ext: Baseline) -> History:
    db: Database = request.app.state.db
    await load_thread(db, org_id, thread_id)
    return await db.read(lambda s: History.read(s, thread_id, thread_runs(s, thread_id), ext))


def _state_of(history: History, checkpoint_id: str | None) -> dict[str, Any]:
    if checkpoint_id is None:
        return history.head_state()
    index = history.index_of(checkpoint_id)
    if index is None:
        raise ProblemError(
            404, ErrorCode.NOT_FOUND, f"no checkpoint {checkpoint_id} in this thread"
        )
    return history.state(index)


Select = Annotated[list[str] | None, Query()]
Subgraphs = Annotated[bool, Query()]


@router.get("/threads/{thread_id}/state")
async def get_state(
    thread_id: str, request: Request, principal: LgReader, ext: ExtDep,
    subgraphs: Subgraphs = False, select: Select = None,
) -> dict[str, Any]:  # fmt: skip
    history = await _history(request, principal.org_id, thread_id, ext)
    return project(_state_of(history, None), select)


@router.get("/threads/{thread_id}/state/{checkpoint_id}")
async def get_state_at(
    thread_id: str, checkpoint_id: str, request: Request, principal: LgReader, ext: ExtDep,
    subgraphs: Subgraphs = False, select: Select = None,
) -> dict[str, Any]:  # fmt: skip
    history = await _history(request, principal.org_id, thread_id, ext)
    return project(_state_of(history, checkpoint_id), select)


@router.post("/threads/{thread_id}/state/checkpoint")
async def post_state_at(
    thread_id: str, request: Request, principal: LgReader, ext: ExtDep
) -> dict[str, Any]:
    body = parse(StateCheckpointBody, await request.body())
    history = await _history(request, principal.org_id, thread_id, ext)
    found = body.checkpoint.get("checkpoint_id")
    return project(_state_of(history, found if isinstance(found, str) else None), body.select)


def _history_page(history: History, body: HistoryBody) -> list[dict[str, Any]]:
    end = len(history.steps)
    for mark, inclusive in ((body.before, False), (body.checkpoint, True)):
        if isinstance(mark, dict):  # a checkpoint, or a config (the JS client's "before")
            mark = (mark.get("configurable") or mark).get("checkpoint_id")
        cid = mark
        if cid:
            index = history.index_of(str(cid))
            if index is None:
                raise ProblemError(404, ErrorCode.NOT_FOUND, f"no checkpoint {cid} in this thread")
            end = min(end, index + 1 if inclusive else index)
    states = []
    for i in range(end - 1, -1, -1):
        state = history.state(i)
        meta = state["metadata"]
        if body.metadata and any(meta.get(k) != v for k, v in body.metadata.items()):
            continue
        states.append(project(state, body.select))
        if len(states) >= body.limit:
            break
    return states


@router.post("/threads/{thread_id}/history")
async def post_history(
    thread_id: str, request: Request, principal: LgReader, ext: ExtDep
) -> list[dict[str, Any]]:
    body = parse(HistoryBody, await request.body())
    return _history_page(await _history(request, principal.org_id, thread_id, ext), body)


@router.get("/threads/{thread_id}/history")
async def get_history(
    thread_id: str, request: Request, principal: LgReader, ext: ExtDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> list[dict[str, Any]]:  # fmt: skip
    body = HistoryBody(limit=limit, before=before)
    return _history_page(await _history(request, principal.org_id, thread_id, ext), body)
