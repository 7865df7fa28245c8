"""Best-of-N (issue 26): N runs of one spec — from scratch, or N forks of one turn —
created together in one group (``grp_…``), all or none.

With ``start``, the N must fit under the organization's active-run cap together: a group
that does not fit is refused before anything is made (429), and if a concurrent create
takes the room meanwhile, the attempts already made are withdrawn (their rows, events
and workflows) and the same 429 is raised. An ``Idempotency-Key`` names the group: the
first attempt carries the key, the others ``<key>#<n>``; a retry gets the same runs.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlmodel import col

from runyard.db.engine import Database
from runyard.db.tables import Run
from runyard.domain import ACTIVE_STATUSES
from runyard.errors import ConcurrentRunLimitExceeded, RunyardError
from runyard.ids import new_id
from runyard.runs.service import RunService, Seed
from runyard.runs.spec import RunSpec

MAX_ATTEMPTS = 4


async def group_of(db: Database, run: Run) -> list[Run]:
    """The runs of ``run``'s group, in the order they were made (just ``run`` without)."""
    if run.group_id is None:
        return [run]
    query = (
        select(Run)
        .where(col(Run.org_id) == run.org_id, col(Run.group_id) == run.group_id)
        .order_by(col(Run.created_at), col(Run.id))
    )
    found: list[Run] = await db.read(lambda s: list(s.execute(query).scalars()))
    return found


async def check_room(db: Database, org_id: str, attempts: int, cap: int) -> None:
    """``ConcurrentRunLimitExceeded`` unless ``attempts`` more active runs fit now."""

    def count(s: Session) -> int:
        return int(
            s.execute(
                select(func.count())
                .select_from(Run)
                .where(col(Run.org_id) == org_id, col(Run.status).in_(list(ACTIVE_STATUSES)))
            ).scalar_one()
        )

    active = await db.read(count)
    if active + attempts > cap:
        raise ConcurrentRunLimitExceeded(
            f"{attempts} attempts do not fit: the organization has {active} active runs "
            f"(limit {cap})"
        )


def _key(key: str | None, n: int) -> str | None:
    return key if key is None or n == 0 else f"{key}#{n}"


async def create_group(
    service: RunService, spec: RunSpec, *, attempts: int, seed: Seed | None, start: bool
) -> tuple[list[Run], bool]:
    """(the group's runs, replayed): ``attempts`` runs of ``spec`` in a new group."""
    if found := await service.replay(spec.org_id, spec.idempotency_key):
        return await group_of(service.db, found), True
    if start:
        await check_room(service.db, spec.org_id, attempts, service.settings.max_active_runs)
    group = new_id("grp")
    made: list[Run] = []
    try:
        for n in range(attempts):
            one = spec.model_copy(
                update={"group_id": group, "idempotency_key": _key(spec.idempotency_key, n)}
            )
            made.append((await service.create(one, seed=seed, start=start)).run)
    except RunyardError:
        for run in made:  # all or nothing
            await service.discard(run.id)
        raise
    return made, False
