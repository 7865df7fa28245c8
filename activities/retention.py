"""Event retention: events older than ``RUNYARD_EVENT_RETENTION_DAYS`` are deleted; a
cursor into them then gets 410 ``EVENTS_EXPIRED``."""

from __future__ import annotations

from datetime import timedelta

import structlog
from pydantic import BaseModel
from temporalio import activity

from runyard.db.engine import Database
from runyard.db.types import utcnow
from runyard.settings import Settings
from runyard.store.events import purge_events

log = structlog.get_logger("runyard.retention")


class PurgeResult(BaseModel):
    deleted: int


class RetentionActivities:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    @activity.defn(name="purge_expired_events")
    async def purge_expired_events(self) -> PurgeResult:
        cutoff = utcnow() - timedelta(days=self.settings.event_retention_days)
        async with self.db.write() as s:
            count = await purge_events(s, cutoff)
        if count:
            log.info("events.purged", count=count, older_than=cutoff.isoformat())
        return PurgeResult(deleted=count)
