"""Webhook and callback delivery attempts, recorded on the delivery row."""

from __future__ import annotations

import structlog
from pydantic import BaseModel
from temporalio import activity

from runyard.db.engine import Database
from runyard.db.models import Webhook, WebhookDelivery
from runyard.db.types import utcnow
from runyard.webhooks.sender import Attempt, Sender

log = structlog.get_logger("runyard.webhooks")
_FINAL = frozenset({"delivered", "failed", "gone", "forbidden", "cancelled"})


class AttemptInput(BaseModel):
    delivery_id: str
    attempt: int
    last: bool = False


class AttemptOutcome(BaseModel):
    status: str  # retry | delivered | failed | gone | forbidden | cancelled
    retry_after: float | None = None


class DeliveryActivities:
    def __init__(self, db: Database, sender: Sender) -> None:
        self.db = db
        self.sender = sender

    @activity.defn(name="attempt_delivery")
    async def attempt_delivery(self, inp: AttemptInput) -> AttemptOutcome:
        async with self.db.session() as s:
            delivery = await s.get(WebhookDelivery, inp.delivery_id)
            hook = (
                await s.get(Webhook, delivery.webhook_id)
                if delivery and delivery.webhook_id
                else None
            )
        if delivery is None:
            return AttemptOutcome(status="cancelled")
        if delivery.status in _FINAL:
            return AttemptOutcome(status=delivery.status)  # a retry after the commit
        secrets: list[str] | None = None
        if delivery.kind == "webhook":
            if hook is None or not hook.enabled:
                await self._record(inp, None, "cancelled")
                return AttemptOutcome(status="cancelled")
            secrets = [hook.secret]
            expires = hook.previous_secret_expires_at
            if hook.previous_secret and expires is not None and expires > utcnow():
                secrets.append(hook.previous_secret)
        result = await self.sender.post(
            delivery.url, delivery.payload, message_id=delivery.message_id, secrets=secrets
        )
        if result.ok:
            status = "delivered"
        elif result.forbidden:
            status = "forbidden"
        elif result.status_code == 410:
            status = "gone"
        else:
            status = "failed" if inp.last else "retry"
        await self._record(inp, result, status)
        log.info(
            "webhook.attempt",
            delivery_id=inp.delivery_id,
            run_id=delivery.run_id,
            org_id=delivery.org_id,
            attempt=inp.attempt,
            status=status,
            status_code=result.status_code,
        )
        return AttemptOutcome(status=status, retry_after=result.retry_after)

    async def _record(self, inp: AttemptInput, result: Attempt | None, status: str) -> None:
        now = utcnow()
        async with self.db.write() as s:
            delivery = await s.get(WebhookDelivery, inp.delivery_id)
            if delivery is None:
                return
            if result is not None:
                entry = {
                    "attempt": inp.attempt,
                    "at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "statusCode": result.status_code,
                    "latencyMs": round(result.latency_ms, 1),
                    "error": result.error,
                }
                delivery.attempts = [*delivery.attempts, entry]
            delivery.status = "pending" if status == "retry" else status
            delivery.updated_at = now
            if status == "gone" and delivery.webhook_id:
                hook = await s.get(Webhook, delivery.webhook_id)
                if hook is not None:  # 410 Gone: the receiver asks us to stop for good
                    hook.enabled = False
                    hook.disabled_reason = "the endpoint answered 410 Gone"
                    hook.updated_at = now


def schedule_from(setting: str) -> list[float]:
    """Seconds between attempts, from RUNYARD_WEBHOOK_RETRY_SCHEDULE."""
    values = [float(x) for x in setting.split(",") if x.strip()]
    if not values or any(v < 0 for v in values):
        raise ValueError(
            "RUNYARD_WEBHOOK_RETRY_SCHEDULE needs non-negative seconds, comma-separated"
        )
    return values
