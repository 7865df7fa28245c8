"""Deciding approvals, for ``/v1/runs/{id}/approvals`` and JSON-RPC ``/command``.

The store is checked first (the approval exists, still waits, or was already decided the
same way, which answers 200 again), then the run's workflow applies the decisions that
are still to be made, all or none (``RunWorkflow.decide``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import structlog
from pydantic import Field, ValidationError

from api.auth import Principal
from api.orchestrator import TemporalConnector
from api.schemas import Body
from runyard.approvals import store
from runyard.db.engine import Database
from runyard.db.tables import Approval, Run
from runyard.errors import (
    ApprovalAlreadyDecided,
    ApprovalNotPending,
    InvalidInput,
    RunNotActive,
)
from runyard.tools import REGISTRY
from workflows.approval_payloads import DecideRequest, Decision

log = structlog.get_logger("runyard.api")
_CATCH_UP_SECONDS = 20.0  # the workflow learns of approvals a task after the store


class DecisionBody(Body):
    decision: Literal["approve", "edit", "deny"]
    input: dict[str, Any] | None = Field(
        default=None, description="For edit: the input the call runs with instead."
    )
    message: str | None = Field(
        default=None, max_length=4096, description="Said to the model (for a deny)."
    )
    scope: Literal["once", "run"] = Field(
        default="once", description="run: allow this tool and match for the rest of the run."
    )


class BatchItem(DecisionBody):
    id: str = Field(max_length=64)


class BatchBody(Body):
    decisions: list[BatchItem] = Field(min_length=1, max_length=100)


def decided_by(principal: Principal) -> str:
    return "token" if principal.run_id is not None else principal.key_id


def _check_input(i: int, item: BatchItem, row: Approval | None) -> None:
    field = f"decisions[{i}].input"
    if item.decision != "edit":
        if item.input is not None:
            raise InvalidInput("only an edit takes an input", field=field)
        return
    if item.input is None:
        raise InvalidInput("an edit needs the input the call runs with", field=field)
    tool = REGISTRY.get(row.tool) if row is not None else None
    if tool is not None:
        try:
            tool.parse(item.input)
        except ValueError as exc:
            raise InvalidInput(f"fails the {tool.name} tool's schema: {exc}", field=field) from None


async def _to_apply(db: Database, run: Run, items: list[BatchItem], key: str | None) -> list[int]:
    """The indexes of the decisions still to apply; raises what the request must answer."""
    ids = [i.id for i in items]
    if len(set(ids)) != len(ids):
        raise InvalidInput("an approval appears twice", field="decisions")
    rows = await db.read(lambda s: {i: s.get(Approval, i) for i in ids})
    todo = []
    for n, item in enumerate(items):
        row = rows[item.id]
        choice = store.Choice(item.id, item.decision, item.input, item.message, item.scope)
        if store.check(row, choice, run.id, key):  # another run's approval: not found
            _check_input(n, item, row)
            todo.append(n)
    return todo


async def decide(
    db: Database,
    temporal: TemporalConnector,
    run: Run,
    items: list[BatchItem],
    principal: Principal,
    key: str | None,
) -> list[dict[str, Any]]:
    """Apply ``items`` (all or none) and answer the approvals as they are now."""
    deadline = time.monotonic() + _CATCH_UP_SECONDS
    while True:
        todo = await _to_apply(db, run, items, key)
        if not todo:
            break
        req = DecideRequest(
            decisions=[
                Decision(
                    id=items[n].id,
                    decision=items[n].decision,
                    input=items[n].input,
                    message=items[n].message,
                    scope=items[n].scope,
                )
                for n in todo
            ],
            decided_by=decided_by(principal),
            key=key,
        )
        runs = await temporal()
        try:
            await runs.decide(run.id, req)
            break
        except (ApprovalNotPending, ApprovalAlreadyDecided) as exc:
            # The store has the answer: decided meanwhile (the same way: 200), expired,
            # or still pending while the workflow has not yet seen it (ask again).
            if time.monotonic() > deadline:
                raise
            log.info("approvals.retry", run_id=run.id, org_id=run.org_id, why=str(exc))
            await asyncio.sleep(0.25)
        except RunNotActive as exc:
            raise ApprovalNotPending(f"run {run.id} has ended") from exc
    log.info(
        "approvals.decided",
        run_id=run.id,
        workflow_id=run.workflow_id,
        org_id=run.org_id,
        approvals=[i.id for i in items],
    )
    rows = await db.read(lambda s: [s.get(Approval, i.id) for i in items])
    return [store.approval_object(a) for a in rows if a is not None]


async def rpc_decide(
    method: str,
    params: dict[str, Any],
    run: Run,
    principal: Principal,
    db: Database,
    temporal: TemporalConnector,
) -> dict[str, Any]:
    """JSON-RPC ``approve`` / ``deny``: ``params.id`` (an approval; without it, every
    approval of the run that waits), ``message``, ``scope``, and for approve ``input``
    (then it is an edit)."""
    ids = params.get("id")
    if ids is None:
        pending = await db.read(lambda s: store.list_approvals(s, run.id, store.PENDING))
        ids = [a.id for a in pending]
        if not ids:
            raise ApprovalNotPending(f"run {run.id} has no approval that waits")
    elif isinstance(ids, str):
        ids = [ids]
    else:
        raise InvalidInput("must be an approval id", field="params.id")
    edit = method == "approve" and params.get("input") is not None
    try:
        items = [
            BatchItem.model_validate(
                {
                    "id": i,
                    "decision": "edit" if edit else method,
                    "input": params.get("input") if edit else None,
                    "message": params.get("message"),
                    "scope": params.get("scope", "once"),
                }
            )
            for i in ids
        ]
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidInput(err["msg"], field=f"params.{where}") from None
    return {"data": await decide(db, temporal, run, items, principal, None)}
