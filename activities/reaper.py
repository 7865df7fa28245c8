"""The sandbox reaper: no sandbox outlives its run.

A run's workflow destroys its sandbox when it ends; this catches the ones it could not:
a workflow terminated in Temporal behind Runyard's back (the store still says running),
a worker that died while destroying, a run deleted from the store. For each configured
provider it lists the sandboxes (``list_ids``), maps each Runyard sandbox to its run
(``sbx_<x>`` and ``sbx_<x>-<n>`` belong to ``run_<x>``: ``runyard/sandbox/ids.py``) and
destroys it when the run is unknown in the store, or its Temporal workflow is closed or
gone, or the run is terminal in the store and its workflow has had
``WORKFLOW_CLEANUP_GRACE`` to destroy the sandbox itself (it may still be keeping the
run's changes), or the run has rebuilt its sandbox since (a host taken for dead came
back). A sandbox whose run is active in both is never touched, nor one that is not
Runyard's (no ``sbx_`` id), nor one whose workflow Temporal could not describe just now
(it is looked at again on the next round).

Each worker host reaps its own local sandboxes (its schedule runs the round on its host's
task queue); E2B sandboxes are reaped by every host's round (destroying one twice is a
no-op).
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities._support import heartbeats
from runyard import metrics
from runyard.db.engine import Database
from runyard.db.tables import Run
from runyard.db.types import utcnow
from runyard.domain import RunStatus
from runyard.sandbox.base import SandboxProvider
from runyard.sandbox.ids import generation_of, run_id_for

log = structlog.get_logger("runyard.reaper")

# How long a run's workflow may still be cleaning up (keeping the changes, destroying)
# after the store says the run ended: the COLLECT and DESTROY activities' limits.
WORKFLOW_CLEANUP_GRACE = timedelta(minutes=15)


class ReapResult(BaseModel):
    reaped: int = 0
    kept: int = 0
    failed: int = 0  # could not be destroyed (tried again next round)


class ReaperActivities:
    def __init__(self, db: Database, providers: dict[str, SandboxProvider]) -> None:
        self.db = db
        self.providers = providers

    @activity.defn(name="reap_sandboxes")
    @heartbeats
    async def reap_sandboxes(self) -> ReapResult:
        return await reap(self.db, self.providers, activity.client())


async def reap(db: Database, providers: dict[str, SandboxProvider], client: Client) -> ReapResult:
    result = ReapResult()
    for name, provider in providers.items():
        before = result.reaped
        try:
            ids = await provider.list_ids()
        except Exception as exc:  # one provider's outage must not stop the others' round
            log.warning("sandbox.reap_list_failed", provider=name, error=str(exc))
            continue
        for sandbox_id in ids:
            run_id = run_id_for(sandbox_id)
            if run_id is None:
                continue
            reason, org_id = await why_reap(db, client, run_id, sandbox_id)
            if reason is None:
                result.kept += 1
                continue
            bound = log.bind(
                run_id=run_id, workflow_id=run_id, org_id=org_id, sandbox_id=sandbox_id
            )
            try:
                await provider.destroy(sandbox_id)
            except Exception as exc:
                result.failed += 1
                bound.warning("sandbox.reap_failed", provider=name, error=str(exc))
                continue
            result.reaped += 1
            bound.info("sandbox.reaped_one", provider=name, reason=reason)
        metrics.sandboxes_reaped(result.reaped - before, name)
    log.info("sandbox.reaped", count=result.reaped, kept=result.kept, failed=result.failed)
    return result


async def why_reap(
    db: Database, client: Client, run_id: str, sandbox_id: str
) -> tuple[str | None, str | None]:
    """Why ``sandbox_id`` of ``run_id`` should go (None: keep it), and the run's org."""
    async with db.session() as s:
        run = await s.get(Run, run_id)
    if run is None:
        return "the run is unknown", None
    current = str((run.sandbox or {}).get("id") or "")
    if current and generation_of(sandbox_id) < generation_of(current):
        # Its host was taken for dead and the run rebuilt its sandbox elsewhere, but the
        # host came back (it was only slow): the old one is nobody's now.
        return "the run's sandbox was rebuilt on another host", run.org_id
    return await _why_reap_active(client, run), run.org_id


async def _why_reap_active(client: Client, run: Run) -> str | None:
    terminal = RunStatus(run.status).is_terminal
    # A run that just ended may still be keeping its changes (collect) before its
    # workflow destroys the sandbox itself: a sandbox is taken from a running workflow
    # only once that is long overdue.
    ended = run.completed_at or run.failed_at or run.cancelled_at or run.updated_at
    overdue = terminal and ended is not None and utcnow() - ended > WORKFLOW_CLEANUP_GRACE
    try:
        described = await client.get_workflow_handle(run.workflow_id or run.id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return "the run's workflow is not in Temporal"
        log.warning("sandbox.reap_describe_failed", run_id=run.id, error=str(exc))
        return f"the run is {run.status}" if overdue else None  # else: next round
    status = described.status
    if status is not None and status != WorkflowExecutionStatus.RUNNING:
        return f"the run's workflow is {status.name.lower()}"
    return f"the run is {run.status}" if overdue else None
