"""``POST /v1/runs`` with ``attempts`` (issue 26): best-of-N from scratch, N runs of one
body in one group, all or none (``runyard.runs.attempts``). The answer is the first run,
as without attempts; every run of the group carries its ``groupId``."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import Response

from api.schemas import CreateRun
from runyard.errors import InvalidInput
from runyard.runs import RunService
from runyard.runs.attempts import create_group
from runyard.store.run_view import run_object

log = structlog.get_logger("runyard.api")


async def create_attempts(
    body: CreateRun,
    org_id: str,
    runs: RunService,
    response: Response,
    idempotency_key: str | None,
) -> dict[str, Any]:
    attempts = body.attempts or 1
    if body.thread_id is not None and attempts > 1:
        raise InvalidInput(
            "a thread runs one run at a time: attempts above 1 cannot continue a thread",
            field="attempts",
            kind="thread",
        )
    spec = await runs.resolve(body, org_id, idempotency_key=idempotency_key)
    made, replayed = await create_group(runs, spec, attempts=attempts, seed=None, start=body.start)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    log.info("runs.attempts", org_id=org_id, runs=[r.id for r in made], replayed=replayed)
    return run_object(made[0])
