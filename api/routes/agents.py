"""``/v1/agents``: named instructions, model and template that runs can use."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import func, select
from sqlmodel import col

from api.deps import DbDep, KnownQueryOnly, ReaderDep, WriterDep
from api.errors import ProblemError
from api.ownership import load_owned
from api.pagination import PageDep, paginate
from api.responses import AUTHENTICATED, answers, operation_id, problems
from api.responses_org import Agent as AgentOut
from api.responses_org import AgentPage
from api.run_factory import invalid
from api.schemas import AgentBody, AgentPatch
from runyard.db.engine import Database
from runyard.db.tables import Agent, Run
from runyard.db.types import utcnow
from runyard.domain import OPEN_STATUSES, ErrorCode
from runyard.ids import new_id
from runyard.llm.pricing import is_valid_model
from runyard.store.run_view import iso
from runyard.store.templates import find_template

router = APIRouter(
    generate_unique_id_function=operation_id,
    prefix="/v1/agents",
    tags=["agents"],
    responses=AUTHENTICATED,
)


def agent_object(a: Agent) -> dict[str, Any]:
    return {
        "id": a.id,
        "object": "agent",
        "name": a.name,
        "instructions": a.instructions,
        "model": a.model,
        "template": a.template,
        "createdAt": iso(a.created_at),
        "updatedAt": iso(a.updated_at),
    }


async def _load(db: Database, org_id: str, agent_id: str) -> Agent:
    return await load_owned(db, Agent, org_id, agent_id, "agent")


async def _check(db: Database, org_id: str, model: str | None, template: str | None) -> None:
    if model is not None and not is_valid_model(model):
        raise invalid("model", f"unknown model '{model}'", "invalid_model")
    if template is not None:
        if await db.read(lambda s: find_template(s, org_id, template)) is None:
            raise ProblemError(400, "RUN_TEMPLATE_NOT_FOUND", f"no template '{template}'")


@router.post(
    "",
    status_code=201,
    summary="Create an agent",
    **answers(AgentOut, 400, s400="RUN_TEMPLATE_NOT_FOUND"),
)
async def create_agent(body: AgentBody, principal: WriterDep, db: DbDep) -> dict[str, Any]:
    await _check(db, principal.org_id, body.model, body.template)
    now = utcnow()
    agent = Agent(
        id=new_id("agt"),
        org_id=principal.org_id,
        name=body.name,
        instructions=body.instructions,
        model=body.model,
        template=body.template,
        created_at=now,
        updated_at=now,
    )
    async with db.write() as s:
        s.add(agent)
    return agent_object(agent)


@router.get("", summary="List agents", dependencies=[KnownQueryOnly], **answers(AgentPage, 400))
async def list_agents(
    principal: ReaderDep,
    db: DbDep,
    paging: PageDep,
) -> dict[str, Any]:
    conds = [col(Agent.org_id) == principal.org_id]
    order = [col(Agent.created_at).desc(), col(Agent.id)]
    return await paginate(db, Agent, conds, order, paging, agent_object)


@router.get("/{agent_id}", summary="An agent", **answers(AgentOut, 404))
async def get_agent(agent_id: str, principal: ReaderDep, db: DbDep) -> dict[str, Any]:
    return agent_object(await _load(db, principal.org_id, agent_id))


@router.patch(
    "/{agent_id}",
    summary="Change an agent (runs already created keep what they had)",
    **answers(AgentOut, 400, 404, s400="RUN_TEMPLATE_NOT_FOUND"),
)
async def patch_agent(
    agent_id: str, body: AgentPatch, principal: WriterDep, db: DbDep
) -> dict[str, Any]:
    agent = await _load(db, principal.org_id, agent_id)
    changes = body.model_dump(exclude_unset=True)
    for required in ("name", "instructions"):
        if required in changes and changes[required] is None:
            raise invalid(required, "cannot be null")
    await _check(db, principal.org_id, changes.get("model"), changes.get("template"))
    for k, v in changes.items():
        setattr(agent, k, v)
    agent.updated_at = utcnow()
    async with db.write() as s:
        await s.merge(agent)
    return agent_object(agent)


@router.delete(
    "/{agent_id}",
    status_code=204,
    summary="Delete an agent without open runs",
    response_class=Response,
    responses=problems(404, 409, s409="CONFLICT: the agent has open runs"),
)
async def delete_agent(agent_id: str, principal: WriterDep, db: DbDep) -> Response:
    agent = await _load(db, principal.org_id, agent_id)
    async with db.write() as s:
        busy = (
            await s.execute(
                select(func.count())
                .select_from(Run)
                .where(col(Run.agent_id) == agent.id, col(Run.status).in_(list(OPEN_STATUSES)))
            )
        ).scalar_one()
        if busy:
            raise ProblemError(409, ErrorCode.CONFLICT, f"agent {agent_id} has {busy} open run(s)")
        found = await s.get(Agent, agent.id)
        if found is not None:
            await s.delete(found)
    return Response(status_code=204)
