"""``/lg/info``, ``/lg/ok`` and the assistants: each agent and each template is one.

Every assistant runs the one graph, ``agent``. An agent's id (``agt_…``) and a
template's slug are assistant ids; ``agent`` (the graph's id, which LangGraph accepts
as its default assistant) is the ``default`` template.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from api.errors import ProblemError
from api.langgraph.bodies import RUN_FIELDS, AssistantSearch, parse
from api.langgraph.deps import ExtDep, LgReader
from api.langgraph.mapping import GRAPH_ID, stamp
from api.langgraph.views import project
from runyard import __version__
from runyard.db.engine import Database
from runyard.db.tables import Agent, Template
from runyard.domain import ErrorCode
from runyard.store.templates import find_template

router = APIRouter()
DEFAULT_TEMPLATE = "default"


@router.get("/ok")
async def ok() -> dict[str, bool]:
    return {"ok": True}


@router.get("/info")
async def info(ext: ExtDep) -> dict[str, Any]:
    return {
        "version": __version__,
        "langgraph_py_version": None,
        "server": "runyard",
        "flags": ext.flags,
    }


@dataclass(frozen=True)
class Assistant:
    """An assistant, and what a run of it starts from."""

    obj: dict[str, Any]
    agent_id: str | None
    template: str | None  # None: the agent's template (or the default)


def _of_agent(a: Agent) -> Assistant:
    configurable = {k: v for k, v in {"model": a.model, "template": a.template}.items() if v}
    return Assistant(_object(a.id, a.name, configurable, {"kind": "agent"}, a), a.id, None)


def _of_template(t: Template) -> Assistant:
    defaults = {k: v for k, v in (t.defaults or {}).items() if k in RUN_FIELDS and v is not None}
    meta = {"kind": "template", "system": t.org_id is None}
    return Assistant(
        _object(t.slug, t.name, {"template": t.slug, **defaults}, meta, t), None, t.slug
    )


def _object(
    assistant_id: str, name: str, configurable: dict[str, Any], meta: dict[str, Any], row: Any
) -> dict[str, Any]:
    return {
        "assistant_id": assistant_id,
        "graph_id": GRAPH_ID,
        "config": {"configurable": configurable},
        "context": {},
        "metadata": meta,
        "version": 1,
        "name": name,
        "description": None,
        "created_at": stamp(row.created_at),
        "updated_at": stamp(row.updated_at),
    }


async def find_assistant(db: Database, org_id: str, assistant_id: str) -> Assistant:
    wanted = DEFAULT_TEMPLATE if assistant_id == GRAPH_ID else assistant_id

    def read(s: Session) -> Assistant | None:
        if wanted.startswith("agt_"):
            agent = s.get(Agent, wanted)
            return _of_agent(agent) if agent is not None and agent.org_id == org_id else None
        template = find_template(s, org_id, wanted)
        return None if template is None else _of_template(template)

    found = await db.read(read)
    if found is None:
        raise ProblemError(404, ErrorCode.NOT_FOUND, f"no assistant {assistant_id}")
    return found


def _all(s: Session, org_id: str) -> list[Assistant]:
    templates = s.scalars(
        select(Template).where((col(Template.org_id) == org_id) | col(Template.org_id).is_(None))
    )
    by_slug: dict[str, Template] = {}
    for t in sorted(templates, key=lambda t: t.org_id is not None):  # the org's shadow
        by_slug[t.slug] = t
    agents = s.scalars(select(Agent).where(col(Agent.org_id) == org_id))
    return [*map(_of_template, by_slug.values()), *map(_of_agent, agents)]


@router.post("/assistants/search")
async def search_assistants(
    request: Request, response: Response, principal: LgReader
) -> list[dict[str, Any]]:
    body = parse(AssistantSearch, await request.body())
    db: Database = request.app.state.db
    found = [a.obj for a in await db.read(lambda s: _all(s, principal.org_id))]
    if body.graph_id is not None:
        found = [a for a in found if a["graph_id"] == body.graph_id]
    if body.name:
        found = [a for a in found if body.name.lower() in a["name"].lower()]
    if body.metadata:
        found = [
            a for a in found if all(a["metadata"].get(k) == v for k, v in body.metadata.items())
        ]
    key = body.sort_by or "created_at"
    found.sort(key=lambda a: (a[key] is None, a[key] or ""), reverse=body.sort_order != "asc")
    page = found[body.offset : body.offset + body.limit]
    response.headers["X-Pagination-Total"] = str(len(found))
    if body.offset + body.limit < len(found):
        response.headers["X-Pagination-Next"] = str(body.offset + body.limit)
    return [project(a, body.select) for a in page]


@router.get("/assistants/{assistant_id}")
async def get_assistant(assistant_id: str, request: Request, principal: LgReader) -> dict[str, Any]:
    return (await find_assistant(request.app.state.db, principal.org_id, assistant_id)).obj


_CONFIGURABLE = {
    "type": "object",
    "properties": {
        "repo": {"type": "string"},
        "template": {"type": "string"},
        "model": {"type": "string"},
        "maxTurns": {"type": "integer", "minimum": 1, "maximum": 1000},
        "maxCostUsd": {"type": "number", "minimum": 0.01, "maximum": 1000},
        "timeoutSeconds": {"type": "integer", "maximum": 3600},
    },
    "additionalProperties": False,
}
_MESSAGES = {
    "type": "object",
    "properties": {"messages": {"type": "array", "items": {"type": "object"}}},
    "required": ["messages"],
    "additionalProperties": False,
}


@router.get("/assistants/{assistant_id}/schemas")
async def get_schemas(assistant_id: str, request: Request, principal: LgReader) -> dict[str, Any]:
    await find_assistant(request.app.state.db, principal.org_id, assistant_id)
    return {
        "graph_id": GRAPH_ID,
        "input_schema": {**_MESSAGES, "title": "Input"},
        "output_schema": {**_MESSAGES, "title": "Output"},
        "state_schema": {**_MESSAGES, "title": "State"},
        "config_schema": {
            "type": "object",
            "title": "Config",
            "properties": {"configurable": _CONFIGURABLE},
        },
        "context_schema": {**_CONFIGURABLE, "title": "Context"},
    }


def _node(node_id: str, kind: str = "runnable") -> dict[str, Any]:
    return {"id": node_id, "type": kind, "data": node_id}


@router.get("/assistants/{assistant_id}/graph")
async def get_graph(
    assistant_id: str,
    request: Request,
    principal: LgReader,
    xray: Annotated[str | None, Query(max_length=10)] = None,
) -> dict[str, Any]:
    """The graph (``xray`` shows the same: it has no subgraphs to open)."""
    await find_assistant(request.app.state.db, principal.org_id, assistant_id)
    return {
        "nodes": [
            _node("__start__", "schema"),
            _node("agent"),
            _node("tools"),
            _node("__end__", "schema"),
        ],
        "edges": [
            {"source": "__start__", "target": "agent"},
            {"source": "agent", "target": "tools", "conditional": True},
            {"source": "agent", "target": "__end__", "conditional": True},
            {"source": "tools", "target": "agent"},
        ],
    }


@router.get("/assistants/{assistant_id}/subgraphs")
@router.get("/assistants/{assistant_id}/subgraphs/{namespace}")
async def get_subgraphs(
    assistant_id: str,
    request: Request,
    principal: LgReader,
    namespace: str | None = None,
    recurse: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    """The graph has no subgraphs."""
    await find_assistant(request.app.state.db, principal.org_id, assistant_id)
    return {}
