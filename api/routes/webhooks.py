"""``/v1/webhooks``: an organization's signed event endpoints and their deliveries."""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from api.callbacks import allowed_callback
from api.deps import DbDep, KnownQueryOnly, ReaderDep, SettingsDep, TemporalDep, WriterDep
from api.errors import ProblemError
from api.orchestrator import TemporalConnector
from api.ownership import load_owned
from api.pagination import PageDep, paginate
from api.responses import AUTHENTICATED, answers, operation_id, problems
from api.responses_org import Delivery, DeliveryPage, WebhookPage, WebhookRotated, WebhookWithSecret
from api.responses_org import Webhook as WebhookOut
from api.run_factory import invalid
from api.schemas import WebhookBody, WebhookPatch
from notifications.outbox import WEBHOOK_EVENTS, cancel_delivery_workflows, stop_deliveries
from runyard.db.engine import Database
from runyard.db.tables import Webhook, WebhookDelivery
from runyard.db.types import utcnow
from runyard.ids import new_id
from runyard.store.run_view import iso

router = APIRouter(
    generate_unique_id_function=operation_id,
    prefix="/v1/webhooks",
    tags=["webhooks"],
    responses=AUTHENTICATED,
)
ROTATION_OVERLAP = timedelta(hours=24)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_object(h: Webhook) -> dict[str, Any]:
    return {
        "id": h.id,
        "object": "webhook",
        "url": h.url,
        "events": h.events or sorted(WEBHOOK_EVENTS),
        "enabled": h.enabled,
        "disabledReason": h.disabled_reason,
        "createdAt": iso(h.created_at),
        "updatedAt": iso(h.updated_at),
    }


def delivery_object(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "object": "delivery",
        "webhookId": d.webhook_id,
        "runId": d.run_id,
        "eventType": d.event_type,
        "messageId": d.message_id,
        "url": d.url,
        "status": d.status,
        "attempts": d.attempts,
        "createdAt": iso(d.created_at),
        "updatedAt": iso(d.updated_at),
    }


def _events(events: list[str] | None) -> list[str]:
    if events is None:
        return sorted(WEBHOOK_EVENTS)
    unknown = sorted(set(events) - WEBHOOK_EVENTS)
    if unknown:
        raise invalid(
            "events",
            f"unknown event(s) {', '.join(unknown)}; use {', '.join(sorted(WEBHOOK_EVENTS))}",
            "enum",
        )
    return sorted(set(events))


async def _load(db: Database, org_id: str, webhook_id: str) -> Webhook:
    return await load_owned(db, Webhook, org_id, webhook_id, "webhook")


def _duplicate(url: str) -> ProblemError:
    return ProblemError(409, "WEBHOOK_URL_DUPLICATE", f"a webhook for {url} already exists")


@router.post(
    "",
    status_code=201,
    summary="Register a webhook; the answer holds its secret, once",
    **answers(
        WebhookWithSecret,
        400,
        409,
        422,
        s409="WEBHOOK_URL_DUPLICATE, WEBHOOK_LIMIT_EXCEEDED",
        s422="url",
    ),
)
async def create_webhook(
    body: WebhookBody, principal: WriterDep, db: DbDep, settings: SettingsDep
) -> dict[str, Any]:
    events = _events(body.events)
    await allowed_callback(body.url, settings, "url")
    now = utcnow()
    hook = Webhook(
        id=new_id("whk"),
        org_id=principal.org_id,
        url=body.url,
        events=events,
        enabled=body.enabled,
        secret=new_secret(),
        created_at=now,
        updated_at=now,
    )
    try:
        async with db.write() as s:
            count = (
                await s.execute(
                    select(func.count())
                    .select_from(Webhook)
                    .where(col(Webhook.org_id) == principal.org_id)
                )
            ).scalar_one()
            if count >= settings.max_webhooks_per_org:
                raise ProblemError(
                    409,
                    "WEBHOOK_LIMIT_EXCEEDED",
                    f"an organization may have at most {settings.max_webhooks_per_org} webhooks",
                )
            s.add(hook)
    except IntegrityError:
        raise _duplicate(body.url) from None
    return {**webhook_object(hook), "secret": hook.secret}


@router.get("", summary="List webhooks", dependencies=[KnownQueryOnly], **answers(WebhookPage, 400))
async def list_webhooks(principal: ReaderDep, db: DbDep, paging: PageDep) -> dict[str, Any]:
    conds = [col(Webhook.org_id) == principal.org_id]
    order = [col(Webhook.created_at), col(Webhook.id)]
    return await paginate(db, Webhook, conds, order, paging, webhook_object)


@router.get("/{webhook_id}", summary="A webhook", **answers(WebhookOut, 404))
async def get_webhook(webhook_id: str, principal: ReaderDep, db: DbDep) -> dict[str, Any]:
    return webhook_object(await _load(db, principal.org_id, webhook_id))


@router.patch(
    "/{webhook_id}",
    summary="Change a webhook's URL, events or enabled flag",
    **answers(WebhookOut, 400, 404, 409, 422, s409="WEBHOOK_URL_DUPLICATE", s422="url"),
)
async def patch_webhook(
    webhook_id: str,
    body: WebhookPatch,
    principal: WriterDep,
    db: DbDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> dict[str, Any]:
    hook = await _load(db, principal.org_id, webhook_id)
    changes = body.model_dump(exclude_unset=True)
    if "url" in changes:
        if changes["url"] is None:
            raise invalid("url", "cannot be null")
        hook.url = await allowed_callback(changes["url"], settings, "url")
    if "events" in changes:
        hook.events = _events(changes["events"])
    disabling = False
    if "enabled" in changes:
        if changes["enabled"] is None:
            raise invalid("enabled", "cannot be null")
        disabling = hook.enabled and not changes["enabled"]
        hook.enabled = changes["enabled"]
        if hook.enabled:
            hook.disabled_reason = None
    hook.updated_at = utcnow()
    started: list[str] = []
    try:
        async with db.write() as s:
            await s.merge(hook)
            if disabling:  # a disabled endpoint gets nothing, pending deliveries included
                started = await stop_deliveries(s, hook.id, hook.updated_at)
    except IntegrityError:
        raise _duplicate(hook.url) from None
    await _cancel_workflows(temporal, started)
    return webhook_object(hook)


@router.delete(
    "/{webhook_id}",
    status_code=204,
    summary="Delete a webhook; its pending deliveries stop",
    response_class=Response,
    responses=problems(404),
)
async def delete_webhook(
    webhook_id: str, principal: WriterDep, db: DbDep, temporal: TemporalDep
) -> Response:
    hook = await _load(db, principal.org_id, webhook_id)
    started: list[str] = []
    async with db.write() as s:
        found = await s.get(Webhook, hook.id)
        if found is not None:
            # In the same transaction: once the delete is committed, no attempt is made.
            started = await stop_deliveries(s, hook.id, utcnow())
            await s.delete(found)
    await _cancel_workflows(temporal, started)
    return Response(status_code=204)


async def _cancel_workflows(temporal: TemporalConnector, delivery_ids: list[str]) -> None:
    """End the stopped deliveries' workflows now rather than at their next attempt (up to
    a day away). Temporal being away does not fail the request: the deliveries are
    cancelled in the store already, so those workflows send nothing when they wake."""
    if not delivery_ids:
        return
    try:
        runs = await temporal()
    except ProblemError:
        return  # the connector logged it
    await cancel_delivery_workflows(runs.temporal, delivery_ids)


@router.post(
    "/{webhook_id}/rotate-secret",
    summary="New secret; the old one still signs for 24 h",
    **answers(WebhookRotated, 404),
)
async def rotate_secret(webhook_id: str, principal: WriterDep, db: DbDep) -> dict[str, Any]:
    hook = await _load(db, principal.org_id, webhook_id)
    now = utcnow()
    hook.previous_secret, hook.secret = hook.secret, new_secret()
    hook.previous_secret_expires_at = now + ROTATION_OVERLAP
    hook.updated_at = now
    async with db.write() as s:
        await s.merge(hook)
    return {
        **webhook_object(hook),
        "secret": hook.secret,
        "previousSecretExpiresAt": iso(hook.previous_secret_expires_at),
    }


@router.get(
    "/{webhook_id}/deliveries",
    summary="Deliveries and their attempts, newest first",
    dependencies=[KnownQueryOnly],
    **answers(DeliveryPage, 400, 404),
)
async def list_deliveries(
    webhook_id: str,
    principal: ReaderDep,
    db: DbDep,
    paging: PageDep,
) -> dict[str, Any]:
    hook = await _load(db, principal.org_id, webhook_id)
    conds = [col(WebhookDelivery.webhook_id) == hook.id]
    order = [col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id)]
    return await paginate(db, WebhookDelivery, conds, order, paging, delivery_object)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    summary="Send a delivery again (same webhook-id, a new delivery record)",
    **answers(Delivery, 404),
)
async def redeliver(
    webhook_id: str, delivery_id: str, principal: WriterDep, db: DbDep
) -> dict[str, Any]:
    hook = await _load(db, principal.org_id, webhook_id)
    async with db.session() as s:
        original = await s.get(WebhookDelivery, delivery_id)
    if original is None or original.webhook_id != hook.id:
        raise ProblemError(404, "NOT_FOUND", f"no delivery {delivery_id} for webhook {webhook_id}")
    now = utcnow()
    again = WebhookDelivery(
        id=new_id("dlv"),
        org_id=hook.org_id,
        webhook_id=hook.id,
        run_id=original.run_id,
        kind="webhook",
        url=hook.url,
        event_type=original.event_type,
        message_id=original.message_id,
        payload=original.payload,
        created_at=now,
        updated_at=now,
    )
    async with db.write() as s:
        s.add(again)
    return delivery_object(again)
