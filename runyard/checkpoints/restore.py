"""A fork's worktree, restored as part of its provisioning (``provision_sandbox``): the
checkpoint its source had at the turn it was forked at, on top of the source's base
commit. A retried provisioning restores again, with the same result."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

import structlog
from sqlalchemy.orm import Session

from runyard.artifacts.store import artifact_store
from runyard.checkpoints.git import restore
from runyard.checkpoints.store import CodeSource, code_at, last_boundary
from runyard.db.engine import Database
from runyard.db.tables import Run
from runyard.errors import SandboxError
from runyard.git.clone import STATE_FILE, GitState, mirror_path
from runyard.runs.thread_order import Strategy, order_of
from runyard.sandbox.base import SandboxProvider
from runyard.settings import Settings

log = structlog.get_logger("runyard.checkpoints")


def _interrupted(s: Session, run: Run) -> dict[str, Any]:
    """A run that interrupted another of its thread (``multitaskStrategy: interrupt``)
    continues its workspace: the worktree at the last turn boundary the interrupted run
    passed (``turn`` None: its latest), as a fork restoring ``code`` would."""
    order = order_of(s, run.id)
    if order is None or order.strategy != Strategy.INTERRUPT or not order.supersedes:
        return {}
    source = s.get(Run, order.supersedes)
    if source is None or source.repo != run.repo:
        return {}  # another repository (or none): nothing of that worktree applies here
    return {"runId": source.id, "turn": None, "restore": "code"}


async def restore_fork(
    db: Database,
    settings: Settings,
    run: Run,
    provider: SandboxProvider,
    sandbox_id: str,
    generation: int = 0,
) -> None:
    """Make a fork's new worktree the one its source had at the turn it was forked at
    (``forkedFrom.restore`` ``both`` or ``code``), and an interrupting run's the one the
    run it interrupted left; nothing for any other run. A fork's
    sandbox rebuilt on another host (``generation`` > 0) gets the fork's own latest
    worktree instead."""
    origin = run.forked_from or {}
    if not origin and generation == 0 and run.thread_id is not None:
        origin = await db.read(lambda s: _interrupted(s, run))
    code_restored = origin.get("restore") in ("both", "code")
    if not origin or not (code_restored or generation > 0):
        return
    mirror = mirror_path(settings, sandbox_id)
    state = GitState.load(mirror)
    if state is None:
        return  # no repository: no code to restore
    source = await db.read(lambda s: s.get(Run, str(origin.get("runId"))))
    if source is None or source.org_id != run.org_id:
        return
    turn = int(origin["turn"]) if origin.get("turn") is not None else None
    days = settings.checkpoint_retention_days

    def find(s: Session) -> CodeSource:
        if generation > 0:
            return code_at(s, run, last_boundary(s, run.id), days)
        return code_at(s, source, last_boundary(s, source.id) if turn is None else turn, days)

    code = await db.read(find)
    bundle = None
    if code.checkpoint is not None and code.checkpoint.bundle_path:
        bundle = await artifact_store(settings).get(
            code.checkpoint.bundle_path, settings.checkpoint_max_bytes
        )
    sandbox = await provider.get(sandbox_id)
    try:
        tree = await restore(sandbox, code.base_sha, bundle, workspace=state.workspace)
    except RuntimeError as exc:
        raise SandboxError(f"the fork's checkpoint could not be restored: {exc}") from exc
    if code.base_sha and code.base_sha != state.base_sha:
        # The fork's changes are measured from the commit its source cloned.
        moved = replace(state, base_sha=code.base_sha)
        (mirror / STATE_FILE).write_text(json.dumps(asdict(moved)))
    log.info(
        "fork.restored",
        run_id=run.id,
        workflow_id=run.id,
        org_id=run.org_id,
        source=source.id,
        turn=turn,
        tree=tree,
    )
