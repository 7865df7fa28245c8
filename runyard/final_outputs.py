"""What ``collect_outputs`` adds when a run completes: branches pushed by commands the
relay did not watch, and ``changes.patch`` for work left in the workspace unpushed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from temporalio import activity

from runyard.artifacts.save import store_artifact
from runyard.artifacts.store import artifact_store
from runyard.db.tables import Artifact, Run
from runyard.git.clone import GitState, mirror_path
from runyard.git.patch import unpushed_changes
from runyard.git.relay import Relay, log_pushes
from runyard.outputs import known_branches
from runyard.sandbox.base import SandboxError, SandboxProvider, ToolError
from runyard.settings import Settings

log = structlog.get_logger("runyard.outputs")


async def repo_outputs(
    run: Run,
    settings: Settings,
    providers: dict[str, SandboxProvider],
    *,
    forward: bool = True,
    active: Callable[[], Awaitable[bool]] | None = None,
    taken: frozenset[str] = frozenset(),
) -> tuple[list[dict[str, Any]], list[Artifact]]:
    """(outputs, artifact rows) from the run's repository; nothing without a repository.

    ``forward``: also forward the branches pushed but not yet forwarded (not for a
    cancelled run, whose work is only kept as ``changes.patch``), while ``active`` says
    the run has not ended.

    Inside an activity, it gives up (with a warning) a few seconds before the activity's
    start-to-close timeout, so a slow repository never fails a run that completed."""
    budget = None
    if activity.in_activity() and (limit := activity.info().start_to_close_timeout):
        budget = max(1.0, limit.total_seconds() - 4)
    try:
        return await asyncio.wait_for(
            _repo_outputs(run, settings, providers, forward, active, taken), budget
        )
    except TimeoutError:
        log.warning(
            "outputs.timed_out", run_id=run.id, workflow_id=run.id, org_id=run.org_id, budget=budget
        )
        return [], []


async def _repo_outputs(
    run: Run,
    settings: Settings,
    providers: dict[str, SandboxProvider],
    forward: bool,
    active: Callable[[], Awaitable[bool]] | None,
    taken: frozenset[str] = frozenset(),
) -> tuple[list[dict[str, Any]], list[Artifact]]:
    info = run.sandbox or {}
    provider = providers.get(str(info.get("provider", "")))
    if not run.repo or provider is None or not info.get("id"):
        return [], []
    if any(o.get("type") == "patch" for o in run.outputs or []):
        return [], []  # a retried activity: already collected
    mirror = mirror_path(settings, str(info["id"]))
    state = GitState.load(mirror)
    if state is None:
        return [], []
    try:
        sandbox = await provider.get(str(info["id"]))
    except SandboxError:
        return [], []
    known = known_branches(run)
    relay = Relay(sandbox, mirror, settings, known, active, taken)
    pushes = await relay.forward() if forward else []
    outputs: list[dict[str, Any]] = [p.output for p in pushes if p.output is not None]
    log_pushes(pushes, run_id=run.id, org_id=run.org_id)
    try:
        patch = await unpushed_changes(
            sandbox, mirror, state, list(known.values()), settings.artifact_max_bytes
        )
    # A broken repository, a patch over the limit, a read the sandbox failed: the run
    # keeps its outcome and its other outputs, the log says why there is no patch.
    except (RuntimeError, OSError, ValueError, ToolError) as exc:
        log.warning(
            "patch.failed", run_id=run.id, workflow_id=run.id, org_id=run.org_id, error=str(exc)
        )
        return outputs, []
    if patch is None:
        return outputs, []
    art = await store_artifact(
        artifact_store(settings),
        org_id=run.org_id,
        run_id=run.id,
        name="changes.patch",
        data=patch.data,
    )
    outputs.append(
        {
            "type": "patch",
            "artifactId": art.id,
            "files": patch.files,
            "insertions": patch.insertions,
            "deletions": patch.deletions,
        }
    )
    return outputs, [art]
