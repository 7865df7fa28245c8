"""Messages to a busy run in the store, on SQLite and on Postgres
(``runyard/store/user_messages.py``): a withdrawn message is never delivered, a delivered
one cannot be withdrawn, a retried delivery writes nothing twice, and the run's ending
drops what is left."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from runyard.db.engine import Database
from runyard.db.tables import RunUserMessage
from runyard.db.types import utcnow
from runyard.domain import RunStatus
from runyard.errors import MessageAlreadyDelivered, RunNotActive
from runyard.store import user_messages as um
from runyard.store.events import list_events, locked_run
from runyard.store.runs import finish
from tests.integration.test_store import new_run


async def test_a_message_is_delivered_withdrawn_or_dropped_once(db: Database) -> None:
    run = await new_run(db)

    def send(mid: str, mode: str) -> Callable[[Session], None]:
        def rec(s: Session) -> None:
            um.record(s, run.id, mid, f"hi {mid}", mode)

        return rec

    for mid, mode in (("msg_a", "steer"), ("msg_b", "queue"), ("msg_c", "queue")):
        await db.transact(send(mid, mode))
    withdrawn = await db.transact(lambda s: um.cancel(s, run.id, "msg_b"))
    assert withdrawn.status == "cancelled"
    ids = ["msg_a", "msg_b"]
    assert await db.transact(lambda s: um.deliver(s, run.id, ids, 2)) == ["msg_a"]
    assert await db.transact(lambda s: um.deliver(s, run.id, ids, 2)) == ["msg_a"]  # retried
    with pytest.raises(MessageAlreadyDelivered):
        await db.transact(lambda s: um.cancel(s, run.id, "msg_a"))

    def end(s: Session) -> None:
        locked = locked_run(s, run.id)
        um.drop_pending(s, locked)
        finish(s, locked, RunStatus.COMPLETED, now=utcnow())

    await db.transact(end)
    with pytest.raises(RunNotActive):
        await db.transact(lambda s: um.record(s, run.id, "msg_d", "late", "steer"))

    def statuses(s: Session) -> dict[str, str | None]:
        found = {m: s.get(RunUserMessage, m) for m in ("msg_a", "msg_b", "msg_c")}
        return {m: row.status if row else None for m, row in found.items()}

    assert await db.read(statuses) == {
        "msg_a": "delivered",
        "msg_b": "cancelled",
        "msg_c": "dropped",
    }
    async with db.session() as session:
        events = [(e.type, e.data) for e in await list_events(session, run.id)]
    assert [t for t, _ in events] == [
        "message.queued",
        "message.queued",
        "message.queued",
        "message.delivered",
        "message.dropped",
        "run.completed",
    ]
    assert events[3][1] == {"messageId": "msg_a", "mode": "steer", "turn": 2}
