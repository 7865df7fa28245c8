"""The checkpoint step of the agent loop (issue 26): at each turn boundary — after the
turn's tool results, before the next model call (or before the outputs are collected) —
the ``checkpoint_workspace`` activity snapshots the worktree on the sandbox's host.

A checkpoint is never worth a run: a failed one is logged and the run goes on (only a
lost host is left to the next tool call, which rebuilds the sandbox). Called only where
``workflow.patched(PATCH)`` holds, so runs in flight replay as they were recorded.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.checkpoints import CheckpointActivities
    from workflows import options
    from workflows.checkpoint_payloads import CheckpointInput
    from workflows.payloads import SandboxRef

PATCH = "checkpoint-at-turn-boundary"

CHECKPOINT = options.ActivityOptions(
    start_to_close=timedelta(minutes=5),
    heartbeat=timedelta(seconds=10),
    retry=RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_attempts=3),
)


async def checkpoint(run_id: str, turn: int, sandbox: SandboxRef, host_lost_seconds: int) -> None:
    """Take the checkpoint of ``turn``'s boundary; never fails the run."""
    try:
        await workflow.execute_activity_method(
            CheckpointActivities.checkpoint_workspace,
            CheckpointInput(run_id=run_id, turn=turn, sandbox=sandbox),
            **CHECKPOINT.remote(
                summary=f"checkpoint turn {turn}",
                **options.on_host(sandbox, host_lost_seconds),
            ),
        )
    except ActivityError as err:
        workflow.logger.warning("no checkpoint at turn %s: %s", turn, err)
