"""``/v1/runs/{id}/approvals``: the tool calls that wait for a person, and decisions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlmodel import col

from api.approvals import BatchBody, BatchItem, DecisionBody, decide
from api.deps import DbDep, IdempotencyKey, KnownQueryOnly, ReaderDep, TemporalDep, WriterDep
from api.pagination import PageDep, paginate
from api.responses import AUTHENTICATED, answers, operation_id
from api.routes.runs import load_run
from runyard.approvals import store
from runyard.approvals.model import Approval, ApprovalList, ApprovalPage
from runyard.db.tables import Approval as ApprovalRow

router = APIRouter(
    generate_unique_id_function=operation_id,
    prefix="/v1/runs",
    tags=["approvals"],
    responses=AUTHENTICATED,
)
Status = Literal["pending", "approved", "edited", "denied", "expired", "cancelled"]
_404 = "RUN_NOT_FOUND, APPROVAL_NOT_FOUND"
_409 = "APPROVAL_ALREADY_DECIDED (another decision), APPROVAL_NOT_PENDING"


@router.get(
    "/{run_id}/approvals",
    summary="The run's approvals, oldest first",
    dependencies=[KnownQueryOnly],
    **answers(ApprovalPage, 400, 404),
)
async def list_approvals(
    run_id: str,
    principal: ReaderDep,
    db: DbDep,
    paging: PageDep,
    status: Annotated[Status | None, Query(description="Only approvals in this status")] = None,
) -> dict[str, Any]:
    run = await load_run(db, principal.org_id, run_id)
    conds = [col(ApprovalRow.run_id) == run.id]
    if status is not None:
        conds.append(col(ApprovalRow.status) == status)
    return await paginate(db, ApprovalRow, conds, store.ORDER, paging, store.approval_object)


@router.post(
    "/{run_id}/approvals/{approval_id}",
    summary="Approve, edit or deny one tool call",
    **answers(Approval, 400, 404, 409, 502, s404=_404, s409=_409),
)
async def decide_one(
    run_id: str,
    approval_id: str,
    body: DecisionBody,
    principal: WriterDep,
    db: DbDep,
    temporal: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    run = await load_run(db, principal.org_id, run_id)
    # The body is checked already; the id from the path is looked up as it is (an id of
    # no approval of this run, however long, is 404 APPROVAL_NOT_FOUND).
    item = BatchItem.model_construct(id=approval_id, **body.model_dump())
    (decided,) = await decide(db, temporal, run, [item], principal, idempotency_key)
    return decided


@router.post(
    "/{run_id}/approvals",
    summary="Decide several approvals at once (all or none)",
    **answers(ApprovalList, 400, 404, 409, 502, s404=_404, s409=_409),
)
async def decide_many(
    run_id: str,
    body: BatchBody,
    principal: WriterDep,
    db: DbDep,
    temporal: TemporalDep,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    run = await load_run(db, principal.org_id, run_id)
    decided = await decide(db, temporal, run, body.decisions, principal, idempotency_key)
    return {"data": decided}
