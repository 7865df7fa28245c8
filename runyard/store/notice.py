"""Postgres's notice of new events: what an append's transaction sends with ``pg_notify``
(delivered on commit only) and what the API's event hub reads back (``runyard/notifier.py``).

A notice is ``"<run id>:<last seq>"``, then, when they fit, a newline and the events
themselves as JSON, so the hub adds them to the run's tail without reading the store:
on Postgres that read was 11 of the API's 18 store reads a 5-tool run. Postgres refuses
a payload of 8000 bytes or more; a notice whose events do not fit (or cannot be written
as standard JSON) carries the ids alone, and the hub reads the events. Readers that know
only the first form take the run id before the first ``:`` either way.

The events' ``data`` is written with the same JSON rules as the store's column and read
with the store's decoder, so it reads back equal to what the store would give.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from runyard.jsonsafe import store_loads

CHANNEL = "runyard_events"
MAX_BYTES = 7900  # under Postgres's 8000, with room to spare


class Announced(NamedTuple):
    """An event as a notice carries it (an ``EventRow``)."""

    seq: int
    type: str
    data: dict[str, Any] | None
    created_at: datetime


def notice(run_id: str, rows: Sequence[dict[str, Any]]) -> str:
    """The notice for ``rows`` just appended to the run (the event table's columns)."""
    head = f"{run_id}:{rows[-1]['seq']}"
    try:
        body = json.dumps(
            [[r["seq"], r["type"], r["data"], r["created_at"].isoformat()] for r in rows],
            allow_nan=False,
            separators=(",", ":"),
        )
    except (TypeError, ValueError):  # the store writes these its own way: let the hub read
        return head
    full = f"{head}\n{body}"
    return full if len(full.encode()) <= MAX_BYTES else head


def read_notice(payload: str) -> tuple[str, list[Announced] | None]:
    """The run id, and the events if the notice carries them (None: read the store)."""
    head, _, body = payload.partition("\n")
    run_id = head.partition(":")[0]
    if not body:
        return run_id, None
    try:
        events = [
            Announced(int(seq), str(typ), data, datetime.fromisoformat(created))
            for seq, typ, data, created in store_loads(body)
        ]
    except (TypeError, ValueError):
        return run_id, None
    return run_id, events or None
