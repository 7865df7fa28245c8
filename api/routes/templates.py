"""``/v1/templates``: the sandbox a run gets (size, provider, image, env, setup, network)
and the defaults it starts from.

An organization sees its own templates and the system ones (``org_id`` NULL, such as
``default``), which are read-only. A slug names one template per organization: a system
slug cannot be taken by an organization's template. Another organization's template is
answered as a missing one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from api.deps import DbDep, KnownQueryOnly, ReaderDep, SettingsDep, WriterDep
from api.errors import ProblemError
from api.pagination import PageDep, paginate
from api.responses import AUTHENTICATED, answers, operation_id, problems
from api.responses_org import Template as TemplateOut
from api.responses_org import TemplatePage
from api.run_factory import invalid
from api.template_schemas import TemplateBody, TemplateDefaults, TemplatePatch, is_slug
from runyard.db.engine import Database
from runyard.db.tables import Run, Template
from runyard.db.types import utcnow
from runyard.domain import OPEN_STATUSES
from runyard.ids import new_id
from runyard.llm.pricing import is_valid_model
from runyard.sandbox.base import SIZES
from runyard.settings import Settings
from runyard.store.run_view import iso
from runyard.store.templates import find_template

router = APIRouter(
    generate_unique_id_function=operation_id,
    prefix="/v1/templates",
    tags=["templates"],
    responses=AUTHENTICATED,
)

_DEFAULT_KEYS = ("model", "maxTurns", "maxCostUsd", "timeoutSeconds")


def template_object(t: Template) -> dict[str, Any]:
    defaults = t.defaults or {}
    return {
        "id": t.id,
        "object": "template",
        "slug": t.slug,
        "name": t.name,
        "system": t.org_id is None,
        "size": t.size,
        "resources": SIZES.get(t.size),
        "provider": t.provider,
        "image": t.image,
        "env": t.env or {},
        "setupScript": t.setup_script,
        "network": t.network,
        "defaults": {k: defaults.get(k) for k in _DEFAULT_KEYS},
        "approvals": t.approvals,
        "createdAt": iso(t.created_at),
        "updatedAt": iso(t.updated_at),
    }


def _not_found(slug: str) -> ProblemError:
    return ProblemError(
        404, "TEMPLATE_NOT_FOUND", f"no template '{slug}'", title="Template not found"
    )


async def _find(db: Database, org_id: str, slug: str) -> Template:
    """The organization's template or a system one; 404 otherwise (also for a string
    that cannot be a slug, which is never looked up)."""
    if not is_slug(slug):
        raise _not_found(slug)
    found = await db.read(lambda s: find_template(s, org_id, slug))
    if found is None:
        raise _not_found(slug)
    return found


async def _find_own(db: Database, org_id: str, slug: str) -> Template:
    """A template the organization may change: system ones answer 403."""
    found = await _find(db, org_id, slug)
    if found.org_id is None:
        raise ProblemError(
            403,
            "TEMPLATE_SYSTEM_READONLY",
            f"'{slug}' is a system template and cannot be changed; "
            "create a template of your own instead",
            title="Template is read-only",
        )
    return found


def _defaults(d: TemplateDefaults, settings: Settings) -> dict[str, Any]:
    """The defaults as stored (camelCase, only those given), checked like a run's fields."""
    if d.model is not None and not is_valid_model(d.model):
        raise invalid("defaults.model", f"unknown model '{d.model}'", "invalid_model")
    if d.timeout_seconds is not None and d.timeout_seconds < settings.min_timeout_seconds:
        raise invalid(
            "defaults.timeoutSeconds",
            f"must be at least {settings.min_timeout_seconds}",
            "greater_than_equal",
        )
    return d.model_dump(by_alias=True, exclude_none=True)


def _slug_exists(slug: str) -> ProblemError:
    return ProblemError(
        409, "TEMPLATE_SLUG_EXISTS", f"a template '{slug}' already exists", title="Slug exists"
    )


@router.post(
    "",
    status_code=201,
    summary="Create a template",
    **answers(TemplateOut, 400, 409, s409="TEMPLATE_SLUG_EXISTS"),
)
async def create_template(
    body: TemplateBody, principal: WriterDep, db: DbDep, settings: SettingsDep
) -> dict[str, Any]:
    defaults = _defaults(body.defaults, settings)
    if await db.read(lambda s: find_template(s, principal.org_id, body.slug)) is not None:
        raise _slug_exists(body.slug)
    now = utcnow()
    template = Template(
        id=new_id("tpl"),
        org_id=principal.org_id,
        slug=body.slug,
        name=body.name or body.slug,
        size=body.size,
        provider=body.provider,
        image=body.image,
        env=body.env,
        setup_script=body.setup_script,
        network=body.network,
        defaults=defaults,
        approvals=body.approvals.wire() if body.approvals else None,
        created_at=now,
        updated_at=now,
    )
    try:
        async with db.write() as s:
            s.add(template)
    except IntegrityError as exc:  # a concurrent create of the same slug won
        raise _slug_exists(body.slug) from exc
    return template_object(template)


@router.get(
    "",
    summary="List the organization's templates and the system ones",
    dependencies=[KnownQueryOnly],
    **answers(TemplatePage, 400),
)
async def list_templates(
    principal: ReaderDep,
    db: DbDep,
    paging: PageDep,
) -> dict[str, Any]:
    conds = [(col(Template.org_id) == principal.org_id) | col(Template.org_id).is_(None)]
    # System templates first, then the organization's, each by slug.
    order = [col(Template.org_id).is_not(None), col(Template.slug)]
    return await paginate(db, Template, conds, order, paging, template_object)


@router.get("/{slug}", summary="A template", **answers(TemplateOut, 404))
async def get_template(slug: str, principal: ReaderDep, db: DbDep) -> dict[str, Any]:
    return template_object(await _find(db, principal.org_id, slug))


@router.patch(
    "/{slug}",
    summary="Change a template (runs already created keep what they had)",
    **answers(TemplateOut, 400, 403, 404, s403="TEMPLATE_SYSTEM_READONLY"),
)
async def patch_template(
    slug: str, body: TemplatePatch, principal: WriterDep, db: DbDep, settings: SettingsDep
) -> dict[str, Any]:
    template = await _find_own(db, principal.org_id, slug)
    changes = body.model_dump(exclude_unset=True)
    if changes.pop("slug", slug) != slug:
        raise invalid("slug", "a template's slug cannot change; create a new template", "frozen")
    for required in ("name", "size", "provider", "env", "network", "defaults"):
        if required in changes and changes[required] is None:
            raise invalid(required, "cannot be null")
    if body.defaults is not None:
        changes["defaults"] = _defaults(body.defaults, settings)
    if "approvals" in changes:
        changes["approvals"] = body.approvals.wire() if body.approvals else None
    for k, v in changes.items():
        setattr(template, k, v)
    template.updated_at = utcnow()
    async with db.write() as s:
        await s.merge(template)
    return template_object(template)


@router.delete(
    "/{slug}",
    status_code=204,
    summary="Delete a template no queued or active run uses",
    response_class=Response,
    responses=problems(
        403,
        404,
        409,
        s403="TEMPLATE_SYSTEM_READONLY",
        s409="TEMPLATE_HAS_RUNNING_SANDBOXES",
    ),
)
async def delete_template(slug: str, principal: WriterDep, db: DbDep) -> Response:
    template = await _find_own(db, principal.org_id, slug)
    async with db.write() as s:
        # Queued runs count too: their sandbox is made from the template when they start.
        busy = (
            await s.execute(
                select(func.count())
                .select_from(Run)
                .where(
                    col(Run.org_id) == principal.org_id,
                    col(Run.template) == slug,
                    col(Run.status).in_(list(OPEN_STATUSES)),
                )
            )
        ).scalar_one()
        if busy:
            raise ProblemError(
                409,
                "TEMPLATE_HAS_RUNNING_SANDBOXES",
                f"template '{slug}' is used by {busy} queued or active run(s); "
                "cancel them or wait until they end",
                title="Template in use",
            )
        found = await s.get(Template, template.id)
        if found is not None:
            await s.delete(found)
    return Response(status_code=204)
