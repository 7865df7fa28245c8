"""Sandbox activities: provision it, run one tool call in it, destroy it."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._support import heartbeats, logger, store_answer
from runyard.db.engine import Database
from runyard.db.models import Run, RunMessage
from runyard.db.types import utcnow
from runyard.repos import repo_url
from runyard.sandbox.base import (
    ResourceLimitExceeded,
    SandboxError,
    SandboxProvider,
    SandboxSpec,
)
from runyard.settings import Settings
from runyard.store.events import NewEvent, append_events, lock_run
from runyard.store.runs import set_status
from runyard.store.templates import find_template
from runyard.store.transcript import assistant_key, get_message, result_key
from runyard.tools import run_tool
from workflows.models import DestroyInput, ProvisionInput, SandboxRef, ToolInput, ToolResult


def sandbox_id_for(run_id: str) -> str:
    # Deterministic, so a retried or restarted provision finds the same sandbox.
    return "sbx_" + run_id.removeprefix("run_")


class SandboxActivities:
    def __init__(
        self, db: Database, settings: Settings, providers: dict[str, SandboxProvider]
    ) -> None:
        self.db = db
        self.settings = settings
        self.providers = providers

    def _provider(self, name: str) -> SandboxProvider:
        provider = self.providers.get(name)
        if provider is None:
            raise ApplicationError(
                f"sandbox provider {name!r} is not configured on this worker",
                type="SANDBOX_UNAVAILABLE",
                non_retryable=True,
            )
        return provider

    async def _run(self, run_id: str) -> Run:
        async with self.db.session() as s:
            run = await s.get(Run, run_id)
        if run is None:
            raise ApplicationError(f"{run_id} not found", type="RUN_NOT_FOUND", non_retryable=True)
        return run

    @activity.defn(name="provision_sandbox")
    @heartbeats
    async def provision_sandbox(self, inp: ProvisionInput) -> SandboxRef:
        run = await self._run(inp.run_id)
        template = await self.db.read(lambda s: find_template(s, run.org_id, run.template))
        if template is None:
            raise ApplicationError(
                f"template {run.template!r} is gone",
                type="RUN_TEMPLATE_NOT_FOUND",
                non_retryable=True,
            )
        now = utcnow()
        async with self.db.write() as s:
            locked = await lock_run(s, run.id)
            assert locked is not None
            if await set_status(s, locked, "pending", allowed_from={"queued"}, now=now):
                await append_events(s, locked, [NewEvent("started", "run.started", {})])
        sandbox_id = sandbox_id_for(run.id)
        spec = SandboxSpec(
            size=template.size,
            repo_url=repo_url(run.repo, self.settings.git_base_url) if run.repo else None,
            env={**(template.env or {}), **(run.env or {})},
            setup_script=template.setup_script,
            network=self.settings.sandbox_network,
        )
        provider = self._provider(template.provider)
        log = logger(run.id, sandbox_id=sandbox_id, org_id=run.org_id)
        try:
            await provider.create(sandbox_id, spec)
        except SandboxError as exc:
            log.warning("sandbox.provision_failed", error=str(exc))
            raise ApplicationError(
                str(exc), type="SANDBOX_UNAVAILABLE", non_retryable=exc.permanent
            ) from exc
        info = {
            "id": sandbox_id,
            "provider": provider.name,
            "size": template.size,
            "resources": spec.resources,
        }
        async with self.db.write() as s:
            locked = await lock_run(s, run.id)
            assert locked is not None
            if await set_status(
                s,
                locked,
                "running",
                allowed_from={"pending"},
                now=utcnow(),
                values={"sandbox": info},
            ):
                await append_events(s, locked, [NewEvent("sandbox.ready", "sandbox.ready", info)])
        log.info("sandbox.ready")
        return SandboxRef(sandbox_id=sandbox_id, provider=provider.name)

    @activity.defn(name="run_tool")
    @heartbeats
    async def run_tool(self, inp: ToolInput) -> ToolResult:
        if inp.answer is not None:
            await store_answer(self.db, inp.answer)
        key = result_key(inp.turn, inp.call_id)
        async with self.db.session() as s:
            done = await get_message(s, inp.run_id, key)
            if done is not None:  # a retry after the result was stored
                return ToolResult(
                    call_id=inp.call_id, is_error=bool(done.content[0].get("is_error"))
                )
            turn = await get_message(s, inp.run_id, assistant_key(inp.turn))
        call = next((b for b in (turn.content if turn else []) if b.get("id") == inp.call_id), None)
        if call is None:
            raise ApplicationError(
                f"no tool call {inp.call_id}", type="INTERNAL_ERROR", non_retryable=True
            )
        provider = self._provider(inp.sandbox.provider)
        try:
            sandbox = await provider.get(inp.sandbox.sandbox_id)
        except SandboxError as exc:
            raise ApplicationError(
                str(exc), type="SANDBOX_UNAVAILABLE", non_retryable=True
            ) from exc
        try:
            out = await run_tool(
                sandbox,
                inp.name,
                call.get("input") or {},
                timeout=self.settings.tool_timeout_seconds,
            )
        except ResourceLimitExceeded as exc:  # the run ends: retrying would only repeat it
            raise ApplicationError(
                str(exc), type="RUN_RESOURCE_LIMIT_EXCEEDED", non_retryable=True
            ) from exc
        except SandboxError as exc:  # e.g. its process could not be started again
            raise ApplicationError(
                str(exc), type="SANDBOX_UNAVAILABLE", non_retryable=exc.permanent
            ) from exc
        block = {
            "type": "tool_result",
            "tool_use_id": inp.call_id,
            "content": out.text,
            "is_error": out.is_error,
        }
        async with self.db.write() as s:
            run = await lock_run(s, inp.run_id)
            assert run is not None
            s.add(RunMessage(run_id=inp.run_id, key=key, role="tool_result", content=[block]))
            await append_events(
                s,
                run,
                [
                    NewEvent(
                        key,
                        "tool.result",
                        {"toolCallId": inp.call_id, "output": out.text, "isError": out.is_error},
                    )
                ],
            )
        return ToolResult(call_id=inp.call_id, is_error=out.is_error)

    @activity.defn(name="destroy_sandbox")
    @heartbeats
    async def destroy_sandbox(self, inp: DestroyInput) -> None:
        provider = self._provider(inp.sandbox.provider)
        await provider.destroy(inp.sandbox.sandbox_id)
