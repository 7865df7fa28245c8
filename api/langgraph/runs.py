"""``/lg`` runs: in a thread (``/threads/{id}/runs…``) and stateless (``/runs…``).

A run's input starts a Runyard run (its last human message is the prompt). A
``command.resume`` answers the question the thread's run waits on: the LangGraph run
that resumes is that same Runyard run, so its id does not change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from api.approvals import decide
from api.auth import Principal
from api.errors import ProblemError
from api.langgraph.assistants import find_assistant
from api.langgraph.bodies import RunAsk, RunBody, modes_of, parse, unprocessable
from api.langgraph.deps import ExtDep, LgReader, LgWriter
from api.langgraph.hooks import Baseline
from api.langgraph.mapping import runyard_statuses
from api.langgraph.stream import RunStream, wait_body
from api.langgraph.threads import load_thread, tag_thread
from api.langgraph.views import History, project, run_object, strategies, thread_runs
from api.orchestrator import TemporalConnector
from api.routes.run_control import cancel_run
from api.routes.run_input import submit_input
from api.routes.threads import placed
from api.run_factory import run_service
from api.schemas import CreateRun, RunInputBody
from api.streams import LeasedStream, StreamCaps, StreamLease
from runyard.db.engine import Database
from runyard.db.tables import Run
from runyard.domain import ErrorCode, RunStatus
from runyard.errors import InvalidInput, NotServed, NotWaitingForInput, RunyardError
from runyard.runs import ThreadSeed
from runyard.runs.thread_order import Strategy

router = APIRouter()
log = structlog.get_logger("runyard.api.langgraph")
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_STATUSES = "^(pending|running|error|success|timeout|interrupted)$"
_CAMEL = {
    "max_turns": "maxTurns",
    "max_cost_usd": "maxCostUsd",
    "timeout_seconds": "timeoutSeconds",
}


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def _resume(
    request: Request,
    principal: Principal,
    ask: RunAsk,
    thread_id: str,
    history: History,
    ext: Baseline,
) -> tuple[Run, int]:
    if ask.fields or ask.metadata:
        raise InvalidInput(
            "a run that resumes keeps its config, context and metadata", field="command"
        )
    waiting = [r for r in history.runs.values() if r.status == RunStatus.WAITING_FOR_INPUT]
    run = waiting[-1] if waiting else None  # runs enqueued behind it may follow it
    pending = history.pending_of(run.id) if run is not None else []
    if run is None or not pending:
        raise NotWaitingForInput(f"thread {thread_id} has no interrupt to resume")
    cursor = run.last_seq
    state = request.app.state
    if run.waiting_for == "approval":  # tool calls wait: command.resume decides them
        decisions = ext.decisions(ask.resume, pending)
        await decide(state.db, state.temporal, run, decisions, principal, None)
    else:
        answer = ext.answer(ask.resume, pending)
        await submit_input(run.id, _input(answer), principal, state.db, state.temporal)
    log.info("lg.resume", run_id=run.id, workflow_id=run.id, org_id=principal.org_id)
    fresh = await state.db.read(lambda s: s.get(Run, run.id))
    return fresh or run, cursor


def _input(answer: str) -> RunInputBody:
    try:
        return RunInputBody(content=answer)
    except ValidationError as exc:
        raise InvalidInput("the answer must be 1 byte to 32 KiB", field="command.resume") from exc


async def _create(
    request: Request, principal: Principal, ask: RunAsk, thread_id: str | None
) -> Run:
    assistant = await find_assistant(_db(request), principal.org_id, ask.assistant_id)
    kwargs: dict[str, Any] = {"prompt": ask.prompt, "metadata": ask.metadata, "start": True}
    if assistant.agent_id:
        kwargs["agent_id"] = assistant.agent_id
    if assistant.template:
        kwargs["template"] = assistant.template
    kwargs.update(ask.fields)
    try:
        create = CreateRun(**kwargs, thread_id=thread_id)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err.get("loc") else "input"
            where = (
                "input.messages"
                if name == "prompt"
                else f"config.configurable.{_CAMEL.get(name, name)}"
            )
            errors.append({"field": where, "message": err["msg"], "code": err["type"]})
        raise unprocessable(errors) from exc
    state = request.app.state
    runs = run_service(state.db, state.settings, state.temporal)
    spec = await runs.resolve(create, principal.org_id)
    strategy = Strategy(ask.multitask_strategy or Strategy.REJECT)
    seed = ThreadSeed(thread_id, strategy) if thread_id else None
    created = await runs.create(spec, seed=seed, start=True)
    await placed(created, state.temporal)  # interrupt/rollback: the runs it supersedes stop
    if thread_id:
        assistant_id = assistant.obj["assistant_id"]
        await state.db.transact(lambda s: tag_thread(s, thread_id, assistant_id))
    log.info("lg.run", run_id=created.run.id, workflow_id=created.run.id, org_id=principal.org_id)
    return created.run


async def _start(
    request: Request, principal: Principal, thread_id: str | None, ext: Baseline
) -> tuple[Run, int, RunAsk]:
    """Parse and check the body, then start the run (or resume the waiting one): the run,
    and the event seq its stream starts after."""
    ask = RunAsk.of(parse(RunBody, await request.body()), stateless=thread_id is None)
    ext.check_multitask(ask.multitask_strategy)
    if thread_id is None:
        ext.check_start(ask.checkpoint_id, None)
        return await _create(request, principal, ask, None), 0, ask
    db = _db(request)
    try:
        await load_thread(db, principal.org_id, thread_id)
    except ProblemError:
        if ask.if_not_exists == "create":
            raise NotServed(
                "if_not_exists 'create': create the thread with POST /threads"
            ) from None
        raise
    history = await db.read(lambda s: History.read(s, thread_id, thread_runs(s, thread_id), ext))
    ext.check_start(ask.checkpoint_id, history.head)
    if ask.resuming:
        run, cursor = await _resume(request, principal, ask, thread_id, history, ext)
        return run, cursor, ask
    return await _create(request, principal, ask, thread_id), 0, ask


def _paths(request: Request, run: Run) -> tuple[str, str]:
    """The run's path under /lg (``Content-Location``) and its absolute URL (the base of
    ``Location``, which the SDK resolves against its own base URL)."""
    prefix = str(request.scope.get("root_path", "")).rstrip("/")  # /lg, under any proxy's
    rel = f"/threads/{run.thread_id}/runs/{run.id}" if run.thread_id else f"/runs/{run.id}"
    return prefix + rel, f"{request.url.scheme}://{request.url.netloc}{prefix}{rel}"


def _lease(request: Request, principal: Principal) -> StreamLease:
    """A place among the API's open streams, taken before a run is made for one."""
    caps: StreamCaps = request.app.state.stream_caps
    return caps.acquire(principal)


_CANCELS: set[asyncio.Task[None]] = set()  # cancels of dropped streams, until done


def _canceller(request: Request, run: Run) -> Callable[[], None]:
    """What cancels ``run`` once its stream's client went away (``on_disconnect:
    cancel``): a task of its own, since the stream's task is being torn down."""
    temporal: TemporalConnector = request.app.state.temporal

    async def cancel() -> None:
        try:
            await (await temporal()).cancel(run.id)
            log.info(
                "lg.cancel_on_disconnect", run_id=run.id, workflow_id=run.id, org_id=run.org_id
            )
        except (RunyardError, ProblemError) as exc:  # it had ended, or Temporal is away
            log.info(
                "lg.cancel_on_disconnect.skipped", run_id=run.id, org_id=run.org_id, why=str(exc)
            )

    def start() -> None:
        task = asyncio.get_running_loop().create_task(cancel())
        _CANCELS.add(task)
        task.add_done_callback(_CANCELS.discard)

    return start


def _sse(request: Request, lease: StreamLease, run: Run, modes: list[str], cursor: int,
         ext: Baseline, *, initial: bool, cancel_on_drop: bool = False,
         ) -> LeasedStream:  # fmt: skip
    stream = RunStream(
        request.app.state.notifier, run, modes, ext, cursor, initial=initial,
        on_drop=_canceller(request, run) if cancel_on_drop else None,
    )  # fmt: skip
    path, url = _paths(request, run)
    headers = {**_SSE_HEADERS, "Content-Location": path}
    if run.thread_id:
        headers["Location"] = url + "/stream"
    return LeasedStream(lease, stream.frames(), media_type="text/event-stream", headers=headers)


async def _stream_new(
    request: Request, principal: Principal, thread_id: str | None, ext: Baseline
) -> LeasedStream:
    lease = _lease(request, principal)  # before the run: a refused stream makes no run
    try:
        run, cursor, ask = await _start(request, principal, thread_id, ext)
    except BaseException:
        lease.release()
        raise
    cancel = ask.on_disconnect == "cancel"
    return _sse(request, lease, run, ask.modes, cursor, ext, initial=True, cancel_on_drop=cancel)


def _waiting(request: Request, run: Run, since: int, ext: Baseline) -> StreamingResponse:
    path, url = _paths(request, run)
    headers = {"Content-Location": path}
    if run.thread_id:
        headers["Location"] = url + "/join"
    body = wait_body(request.app.state.notifier, run.id, since, ext)
    return StreamingResponse(body, media_type="application/json", headers=headers)


def _created(request: Request, response: Response, run: Run, ask: RunAsk) -> dict[str, Any]:
    response.headers["Content-Location"] = _paths(request, run)[0]
    return run_object(run, None if ask.resuming else ask.multitask_strategy)


# -- in a thread ---------------------------------------------------------------------


@router.post("/threads/{thread_id}/runs")
async def create_run(
    thread_id: str, request: Request, response: Response, principal: LgWriter, ext: ExtDep
) -> dict[str, Any]:
    run, _, ask = await _start(request, principal, thread_id, ext)
    return _created(request, response, run, ask)


@router.post("/threads/{thread_id}/runs/stream")
async def stream_run(
    thread_id: str, request: Request, principal: LgWriter, ext: ExtDep
) -> LeasedStream:
    return await _stream_new(request, principal, thread_id, ext)


@router.post("/threads/{thread_id}/runs/wait")
async def wait_run(
    thread_id: str, request: Request, principal: LgWriter, ext: ExtDep
) -> StreamingResponse:
    run, cursor, _ = await _start(request, principal, thread_id, ext)
    return _waiting(request, run, cursor, ext)


async def _thread_run(request: Request, principal: Principal, thread_id: str, run_id: str) -> Run:
    db = _db(request)
    await load_thread(db, principal.org_id, thread_id)
    run = await db.read(lambda s: s.get(Run, run_id))
    if run is None or run.org_id != principal.org_id or run.thread_id != thread_id:
        raise ProblemError(404, ErrorCode.RUN_NOT_FOUND, f"no run {run_id} in thread {thread_id}")
    return run


@router.get("/threads/{thread_id}/runs")
async def list_runs(
    thread_id: str, request: Request, principal: LgReader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    offset: Annotated[int, Query(ge=0)] = 0,
    status: Annotated[str | None, Query(pattern=_STATUSES)] = None,
    select_: Annotated[list[str] | None, Query(alias="select")] = None,
) -> list[dict[str, Any]]:  # fmt: skip
    db = _db(request)
    await load_thread(db, principal.org_id, thread_id)
    stmt = select(Run).where(col(Run.org_id) == principal.org_id, col(Run.thread_id) == thread_id)
    if status is not None:
        stmt = stmt.where(col(Run.status).in_(sorted(runyard_statuses(status) or [])))

    def read(s: Session) -> tuple[list[Run], dict[str, str]]:
        q = stmt.order_by(col(Run.created_at).desc(), col(Run.id).desc())
        found = list(s.scalars(q.offset(offset).limit(limit)))
        return found, strategies(s, [r.id for r in found])

    runs, chosen = await db.read(read)
    objs = [run_object(r, chosen.get(r.id)) for r in runs]
    if status is not None:  # "timeout" and "error" share the failed status
        objs = [o for o in objs if o["status"] == status]
    return [project(o, select_) for o in objs]


@router.get("/threads/{thread_id}/runs/{run_id}")
async def get_run(
    thread_id: str, run_id: str, request: Request, principal: LgReader
) -> dict[str, Any]:
    run = await _thread_run(request, principal, thread_id, run_id)
    chosen = await _db(request).read(lambda s: strategies(s, [run_id]))
    return run_object(run, chosen.get(run_id))


@router.get("/threads/{thread_id}/runs/{run_id}/join")
async def join_run(
    thread_id: str, run_id: str, request: Request, principal: LgReader, ext: ExtDep
) -> StreamingResponse:
    run = await _thread_run(request, principal, thread_id, run_id)
    return _waiting(request, run, 0, ext)


@router.get("/threads/{thread_id}/runs/{run_id}/stream")
async def join_stream(
    thread_id: str, run_id: str, request: Request, principal: LgReader, ext: ExtDep,
    stream_mode: Annotated[list[str] | None, Query()] = None,
    cancel_on_disconnect: Annotated[bool, Query()] = False,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> LeasedStream:  # fmt: skip
    run = await _thread_run(request, principal, thread_id, run_id)
    modes = modes_of(stream_mode)
    cursor = _last_event_id(last_event_id)
    lease = _lease(request, principal)
    return _sse(
        request, lease, run, modes, cursor, ext, initial=cursor == 0,
        cancel_on_drop=cancel_on_disconnect,
    )  # fmt: skip


def _last_event_id(raw: str | None) -> int:
    if raw is None or not raw.strip():
        return 0
    if not (raw.strip().isascii() and raw.strip().isdecimal()):
        raise InvalidInput("must be the id of an event this stream sent", field="Last-Event-ID")
    return int(raw.strip())


@router.post("/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel(
    thread_id: str, run_id: str, request: Request, principal: LgWriter,
    wait: Annotated[bool, Query()] = False,
    action: Annotated[str, Query(pattern="^(interrupt|rollback)$")] = "interrupt",
) -> dict[str, Any]:  # fmt: skip
    """Cancel the run (its answer is final once the store says how it ended)."""
    if action == "rollback":
        raise NotServed("action 'rollback': a cancelled run keeps its transcript")
    await _thread_run(request, principal, thread_id, run_id)
    state = request.app.state
    await cancel_run(run_id, principal, state.db, state.temporal)
    return run_object(await _thread_run(request, principal, thread_id, run_id))


# -- stateless -----------------------------------------------------------------------


@router.post("/runs")
async def create_stateless(
    request: Request, response: Response, principal: LgWriter, ext: ExtDep
) -> dict[str, Any]:
    run, _, ask = await _start(request, principal, None, ext)
    return _created(request, response, run, ask)


@router.post("/runs/stream")
async def stream_stateless(request: Request, principal: LgWriter, ext: ExtDep) -> LeasedStream:
    return await _stream_new(request, principal, None, ext)


@router.post("/runs/wait")
async def wait_stateless(request: Request, principal: LgWriter, ext: ExtDep) -> StreamingResponse:
    run, cursor, _ = await _start(request, principal, None, ext)
    return _waiting(request, run, cursor, ext)
