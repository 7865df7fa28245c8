"""Checkpoints on the sandbox's host (issue 26): ``checkpoint_workspace`` at each turn
boundary. (A fork's restore is part of its provisioning: ``runyard.checkpoints.restore``.)"""

from __future__ import annotations

from temporalio import activity

from activities._support import heartbeats, logger, typed_failures
from activities.sandbox import SandboxAccess
from runyard.artifacts.store import artifact_store
from runyard.checkpoints.git import take_snapshot
from runyard.checkpoints.store import boundary_at, record_boundary
from runyard.domain import TERMINAL_STATUSES
from runyard.git.clone import GitState, mirror_path
from workflows.checkpoint_payloads import CheckpointInput, CheckpointResult


class CheckpointActivities(SandboxAccess):
    @activity.defn(name="checkpoint_workspace")
    @typed_failures
    @heartbeats
    async def checkpoint_workspace(self, inp: CheckpointInput) -> CheckpointResult:
        """Record the boundary of ``inp.turn``, with a checkpoint when the worktree
        changed. A retry finds the boundary recorded and does nothing more."""
        run = await self._run(inp.run_id)
        done = await self.db.read(lambda s: boundary_at(s, run.id, inp.turn))
        if done is not None:
            return CheckpointResult(changed=done.changed, seq=done.seq)
        if run.status in TERMINAL_STATUSES:
            return CheckpointResult()
        log = logger(run.id, org_id=run.org_id, turn=inp.turn)
        state = GitState.load(mirror_path(self.settings, inp.sandbox.sandbox_id))
        snap = None
        if state is not None:  # a run without a repository has no code to checkpoint
            sandbox = await self._provider(inp.sandbox.provider).get(inp.sandbox.sandbox_id)
            try:
                snap = await take_snapshot(
                    sandbox,
                    inp.turn,
                    state.base_sha,
                    max_bundle=self.settings.checkpoint_max_bytes,
                    max_diff=self.settings.checkpoint_diff_max_bytes,
                    workspace=state.workspace,
                )
            except RuntimeError as exc:  # a repository the agent broke: no checkpoint
                log.warning("checkpoint.failed", error=str(exc))
        store = artifact_store(self.settings)
        row = await record_boundary(
            self.db, store, run, inp.turn, state.base_sha if state else None, snap
        )
        if row.changed:
            log.info(
                "checkpoint.taken", seq=row.seq, files=row.files, kept=row.bundle_path is not None
            )
        return CheckpointResult(changed=row.changed, seq=row.seq)
