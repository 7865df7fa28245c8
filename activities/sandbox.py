"""Sandbox activities: provision it, run one tool call in it, collect what the agent left
in it, destroy it. They change no run status: the workflow does that with what they return.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from sqlalchemy.orm import Session
from temporalio import activity

from activities._support import heartbeats, logger, typed_failures
from runyard import metrics, tracing
from runyard.approvals.store import edited_input, edited_note
from runyard.checkpoints.restore import restore_fork
from runyard.checkpoints.store import sources_branches
from runyard.db.engine import Database
from runyard.db.tables import Run, Template
from runyard.domain import TERMINAL_STATUSES
from runyard.errors import (
    InternalError,
    RunNotFound,
    SandboxError,
    SandboxUnavailable,
    TemplateNotFound,
)
from runyard.events import data as ev
from runyard.events import keys
from runyard.final_outputs import repo_outputs
from runyard.git.intake import clone_url
from runyard.outputs import known_branches, record_outputs
from runyard.sandbox.base import SandboxProvider, SandboxSpec
from runyard.sandbox.ids import sandbox_id_for
from runyard.settings import Settings
from runyard.store.events import RunHead, append_events, locked_head, locked_run
from runyard.store.templates import find_template
from runyard.store.transcript import add_message, final_text
from runyard.store.turns import call_state
from runyard.tools import ToolContext, after_bash, needs_context, run_tool
from workflows.payloads import (
    CollectInput,
    DestroyInput,
    ProvisionInput,
    SandboxCall,
    SandboxInfo,
    SandboxRef,
    ToolInput,
)


class SandboxAccess:
    """What the activities that reach a run's sandbox share: the store, the settings and
    this worker's providers."""

    def __init__(
        self, db: Database, settings: Settings, providers: dict[str, SandboxProvider]
    ) -> None:
        self.db = db
        self.settings = settings
        self.providers = providers

    def _provider(self, name: str) -> SandboxProvider:
        provider = self.providers.get(name)
        if provider is None:
            raise SandboxError(f"sandbox provider {name!r} is not configured on this worker")
        return provider

    async def _run(self, run_id: str) -> Run:
        run = await self.db.read(lambda s: s.get(Run, run_id))
        if run is None:
            raise RunNotFound(f"{run_id} is not in the store")
        return run

    def _active(self, run_id: str) -> Callable[[], Awaitable[bool]]:
        """Whether the run is still active, as the store says now: asked right before
        anything leaves for the outside. A cancel writes the terminal status first."""

        async def active() -> bool:
            run = await self.db.read(lambda s: s.get(Run, run_id))
            return run is not None and run.status not in TERMINAL_STATUSES

        return active


class SandboxActivities(SandboxAccess):
    @activity.defn(name="provision_sandbox")
    @typed_failures
    @heartbeats
    async def provision_sandbox(self, inp: ProvisionInput) -> SandboxInfo:
        """Create the run's sandbox on this host. A local sandbox's later activities go to
        this host's task queue (``SandboxRef.task_queue``), where its files are."""

        def load(s: Session) -> tuple[Run | None, Template | None]:
            run = s.get(Run, inp.run_id)
            return run, None if run is None else find_template(s, run.org_id, run.template)

        run, template = await self.db.read(load)  # one read for both
        if run is None:
            raise RunNotFound(f"{inp.run_id} is not in the store")
        if template is None:
            raise TemplateNotFound(f"template {run.template!r} is gone")
        sandbox_id = sandbox_id_for(run.id, inp.generation)
        network = template.network == "full"
        if network and not self.settings.sandbox_network:
            raise SandboxUnavailable(
                f'template {template.slug!r} asks for network "full", but this server gives '
                "sandboxes no network access (the operator's RUNYARD_SANDBOX_NETWORK is off)"
            )
        spec = SandboxSpec(
            size=template.size,
            repo_url=clone_url(run.repo, self.settings) if run.repo else None,
            env={**(template.env or {}), **(run.env or {})},
            setup_script=template.setup_script,
            network=network,
            image=template.image,
        )
        provider = self._provider(template.provider)
        log = logger(run.id, sandbox_id=sandbox_id, org_id=run.org_id)
        try:
            await provider.create(sandbox_id, spec)
        except SandboxError as exc:
            log.warning("sandbox.provision_failed", error=str(exc))
            raise
        # A fork starts from its source's checkpoint (issue 26); any other run: nothing.
        await restore_fork(self.db, self.settings, run, provider, sandbox_id, inp.generation)
        host_bound = provider.name == "local"  # its workspace is on this host's disk
        log.info("sandbox.ready", host=self.settings.host_name if host_bound else None)
        metrics.sandbox_provisioned(provider.name)
        return SandboxInfo(
            ref=SandboxRef(
                sandbox_id=sandbox_id,
                provider=provider.name,
                task_queue=self.settings.host_task_queue if host_bound else None,
                generation=inp.generation,
            ),
            size=template.size,
            resources=spec.resources,
            setup=bool(template.setup_script),
        )

    @activity.defn(name="run_tool")
    @typed_failures
    @heartbeats
    async def run_tool(self, inp: ToolInput) -> None:
        """Run one tool call; its result is stored (and announced) exactly once."""
        await self.tool(inp)

    async def tool(self, inp: ToolInput, *, unless_stopping: bool = False) -> bool:
        """``run_tool``'s work, which ``run_turn_and_tools`` does for the calls of its turn.

        True when the call's result is stored (now or before); False when nothing ran
        because the run ended, or (``unless_stopping``) a close or an interrupt asked it
        to stop: the workflow decides what becomes of the call."""
        key = keys.tool_result(inp.turn, inp.call_id)
        state = await self.db.read_core(lambda c: call_state(c, inp.run_id, inp.turn, inp.call_id))
        if state.result_stored:
            return True  # a retry after the result was stored
        if state.status in TERMINAL_STATUSES or (unless_stopping and state.stopping):
            return False  # the run ended (cancelled), or it stops at this boundary
        call = state.call
        if call is None:
            raise InternalError(f"turn {inp.turn} has no tool call {inp.call_id}")
        edited = None
        if state.approvals:
            edited = await self.db.read(lambda s: edited_input(s, inp.run_id, inp.call_id))
        sandbox = await self._provider(inp.sandbox.provider).get(inp.sandbox.sandbox_id)
        args = (call.get("input") or {}) if edited is None else edited  # a person's edit
        ctx = await self._tool_context(inp) if needs_context(inp.name, args) else None
        started = time.monotonic()
        with tracing.span(f"tool {metrics.tool_label(inp.name)}", run_id=inp.run_id):
            out = await run_tool(
                sandbox, inp.name, args, timeout=self.settings.tool_timeout_seconds, ctx=ctx
            )
        seconds = time.monotonic() - started
        if ctx is not None and inp.name == "bash":
            out = await after_bash(sandbox, ctx, args, out)  # forwards pushed branches
        if edited is not None:  # the model's call shows its own input: say what ran
            out = replace(out, text=f"{edited_note(edited)}\n{out.text}")
        block = {
            "type": "tool_result",
            "tool_use_id": inp.call_id,
            "content": out.text,
            "is_error": out.is_error,
        }
        data = ev.ToolResult(tool_call_id=inp.call_id, output=out.text, is_error=out.is_error)

        def store(s: Session) -> None:
            run: Run | RunHead
            if out.outputs or out.artifacts:
                run = locked_run(s, inp.run_id)
                record_outputs(s, run, out.outputs, key, out.artifacts)
            else:  # the common case: no Run object to build
                run = locked_head(s, inp.run_id)
            add_message(s, inp.run_id, key, "tool_result", [block])
            append_events(s, run, [data.event(key)], fresh=True)  # the message is new

        await self.db.transact(store)
        metrics.tool_call(inp.name, seconds, error=out.is_error)  # after the commit: once
        return True

    async def _taken(self, run: Run) -> frozenset[str]:
        """A fork's: the branches its sources forwarded (it pushes to its own)."""
        if not run.forked_from:
            return frozenset()
        taken: frozenset[str] = await self.db.read(lambda s: sources_branches(s, run))
        return taken

    async def _tool_context(self, inp: ToolInput) -> ToolContext:
        run = await self._run(inp.run_id)
        return ToolContext.build(
            self.settings,
            run.id,
            run.org_id,
            run.repo,
            inp.sandbox.sandbox_id,
            known_branches(run),
            self._active(run.id),
            await self._taken(run),
        )

    @activity.defn(name="collect_outputs")
    @typed_failures
    @heartbeats
    async def collect_outputs(self, inp: CollectInput) -> None:
        """Record what the agent produced, each output announced once: the final text,
        branches pushed but not yet forwarded, and ``changes.patch`` for unpushed work."""
        text, current = await self.db.read(
            lambda s: (final_text(s, inp.run_id), s.get(Run, inp.run_id))
        )
        if current is None:
            raise RunNotFound(f"{inp.run_id} is not in the store")
        outputs = [{"type": "text", "text": text}] if text and inp.include_text else []
        extra, artifacts = await repo_outputs(
            current,
            self.settings,
            self.providers,
            forward=inp.forward,
            active=self._active(inp.run_id),
            taken=await self._taken(current),
        )

        def store(s: Session) -> None:
            run = locked_run(s, inp.run_id)
            kept = [o for o in run.outputs or [] if o.get("type") != "text" or not inp.include_text]
            run.outputs = outputs + kept
            s.add(run)
            events = [
                ev.OutputDetected.model_validate(o).event(keys.final_output(i))
                for i, o in enumerate(outputs)
            ]
            append_events(s, run, events)
            record_outputs(s, run, extra, "collect", artifacts)

        await self.db.transact(store)

    @activity.defn(name="destroy_sandbox")
    @typed_failures
    @heartbeats
    async def destroy_sandbox(self, inp: DestroyInput) -> None:
        await self._provider(inp.sandbox.provider).destroy(inp.sandbox.sandbox_id)
        metrics.sandbox_destroyed(inp.sandbox.provider)

    @activity.defn(name="pause_sandbox")
    async def pause_sandbox(self, inp: SandboxCall) -> None:
        """Stop the sandbox of a run waiting for input from using CPU. Never fails the run:
        a sandbox that cannot be paused keeps running, and that is logged."""
        await self._pause_or_resume("pause", inp)

    @activity.defn(name="resume_sandbox")
    async def resume_sandbox(self, inp: SandboxCall) -> None:
        await self._pause_or_resume("resume", inp)

    async def _pause_or_resume(self, what: str, inp: SandboxCall) -> None:
        log = logger(inp.run_id, sandbox_id=inp.sandbox.sandbox_id, org_id=inp.org_id)
        try:
            provider = self._provider(inp.sandbox.provider)
            if what == "pause":
                await provider.pause(inp.sandbox.sandbox_id)
            else:
                await provider.resume(inp.sandbox.sandbox_id)
        except Exception as exc:  # a failure here must never end the run
            log.warning(f"sandbox.{what}_failed", error=f"{type(exc).__name__}: {exc}")
            return
        log.info("sandbox.paused" if what == "pause" else "sandbox.resumed")
