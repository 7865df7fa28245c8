"""The ``e2b`` sandbox provider: each sandbox is an E2B microVM, driven with the official
e2b SDK (``AsyncSandbox``).

A sandbox is created from the template's ``image`` (an E2B template; ``base`` when there
is none) with the run's env and a timeout, and carries Runyard's metadata
(``runyard_sandbox_id``, ``runyard_run_id``), so any worker finds it again by listing
E2B's sandboxes: nothing is kept on the worker. Each ``get`` connects anew (which renews
the timeout and resumes a paused sandbox). The repository is cloned inside the sandbox
with git, over the network: the clone URL carries no credential, and neither does the
sandbox's env (``E2B_API_KEY`` stays in the worker). Without ``RUNYARD_SANDBOX_NETWORK``
the sandbox's internet access is turned off once the clone is done.

``pause``/``resume`` stop the microVM while its run waits for input (E2B bills nothing
for a paused sandbox) and start it again; ``list_ids`` names the sandboxes of Runyard
(running or paused) for a reaper.
"""

from __future__ import annotations

import contextlib
import shlex
from typing import Any

import structlog
from e2b import AsyncSandbox, CommandExitException, SandboxQuery, SandboxState
from e2b.exceptions import SandboxException, SandboxNotFoundException

from runyard.errors import RepositoryNotFound
from runyard.sandbox.base import SandboxError, SandboxSpec, SandboxUnavailable
from runyard.sandbox.e2b_sandbox import (
    SDK_ERRORS,
    USER,
    WORKSPACE,
    E2BSandbox,
    guarded,
    sdk_error,
)
from runyard.sandbox.ids import run_id_for
from runyard.sandbox.local_sandbox import FILE_DEADLINE
from runyard.settings import Settings

log = structlog.get_logger(__name__)

META_ID = "runyard_sandbox_id"
META_RUN = "runyard_run_id"
DEFAULT_TEMPLATE = "base"
# Written last by ``create``: a sandbox without it was left half made by a provision
# that died, and is made again. Outside the workspace, so the agent's tools never see it.
READY = "/var/lib/runyard/ready"
CLONE_TIMEOUT = 900.0
MAX_LIST_PAGES = 50
# What git says for a repository that is not there, or not there without credentials
# (GitHub answers a private repository as missing; no credential ever enters a sandbox).
_MISSING = (
    "not found",
    "does not exist",
    "does not appear to be a git repository",
    "terminal prompts disabled",
    "could not read username",
)


def _ids(sandbox_id: str, e2b_id: str | None = None) -> dict[str, str]:
    """What every log line of this provider carries (the run's workflow id is its id)."""
    run_id = run_id_for(sandbox_id) or ""
    ids = {"run_id": run_id, "workflow_id": run_id, "sandbox_id": sandbox_id}
    return ids | ({"e2b_id": e2b_id} if e2b_id else {})


class E2BSandboxProvider:
    name = "e2b"

    def __init__(
        self,
        *,
        api_key: str,
        domain: str | None = None,
        api_url: str | None = None,
        sandbox_url: str | None = None,
        timeout_seconds: int = 3600,
        request_timeout: float = 60.0,
    ) -> None:
        opts: dict[str, Any] = {
            "api_key": api_key,
            "domain": domain,
            "api_url": api_url,
            "sandbox_url": sandbox_url,
            "request_timeout": request_timeout,
        }
        self._opts = {k: v for k, v in opts.items() if v is not None}
        self.timeout_seconds = timeout_seconds
        # Runyard id → E2B id, as this worker last saw it: saves the list call on each
        # tool call. Only a shortcut: a restarted worker (or a stale entry) lists again.
        self._known: dict[str, str] = {}

    # -- finding sandboxes -----------------------------------------------------------

    async def _find(self, sandbox_id: str) -> str | None:
        """The E2B id of Runyard's sandbox ``sandbox_id`` (running or paused), if any."""
        query = SandboxQuery(
            metadata={META_ID: sandbox_id}, state=[SandboxState.RUNNING, SandboxState.PAUSED]
        )
        paginator = AsyncSandbox.list(query=query, limit=10, **self._opts)
        found = await guarded(paginator.next_items, "listing E2B sandboxes")
        for info in found:
            if (info.metadata or {}).get(META_ID) == sandbox_id:
                return str(info.sandbox_id)
        return None

    async def _connect(self, sandbox_id: str, e2b_id: str) -> E2BSandbox | None:
        """Connect (renewing its timeout, resuming it if paused); None if it is gone."""
        try:
            sdk = await AsyncSandbox.connect(e2b_id, timeout=self.timeout_seconds, **self._opts)
        except SandboxNotFoundException:
            self._known.pop(sandbox_id, None)
            return None
        except SDK_ERRORS as exc:
            raise sdk_error(exc, f"connecting to sandbox {sandbox_id}") from exc
        self._known[sandbox_id] = e2b_id
        return E2BSandbox(sandbox_id, sdk)

    async def list_ids(self) -> list[str]:
        """Runyard's sandbox ids of every E2B sandbox (running or paused) it made."""
        query = SandboxQuery(state=[SandboxState.RUNNING, SandboxState.PAUSED])
        paginator = AsyncSandbox.list(query=query, limit=100, **self._opts)
        ids: list[str] = []
        for _ in range(MAX_LIST_PAGES):
            if not paginator.has_next:
                break
            for info in await guarded(paginator.next_items, "listing E2B sandboxes"):
                sid = (info.metadata or {}).get(META_ID)
                if sid:
                    ids.append(sid)
        return sorted(set(ids))

    # -- the protocol ----------------------------------------------------------------

    async def create(self, sandbox_id: str, spec: SandboxSpec) -> E2BSandbox:
        existing = await self._find(sandbox_id)
        if existing is not None and (found := await self._connect(sandbox_id, existing)):
            if await self._ready(found):
                return found  # a retried provision
            log.info("sandbox.e2b_half_made", **_ids(sandbox_id, existing))
            await self._kill(existing)
        metadata = {META_ID: sandbox_id, META_RUN: run_id_for(sandbox_id) or ""}
        template = spec.image or DEFAULT_TEMPLATE
        try:
            sdk = await AsyncSandbox.create(
                template=template,
                timeout=self.timeout_seconds,
                metadata=metadata,
                envs=dict(spec.env),
                allow_internet_access=True,  # for the clone; turned off after it
                # Left without a call for the timeout (a run waiting long for an
                # answer), it is paused, not killed; connecting resumes it.
                lifecycle={"on_timeout": "pause"},
                **self._opts,
            )
        except SandboxException as exc:
            if getattr(exc, "status_code", None) in (400, 404):  # retrying cannot help
                raise SandboxUnavailable(
                    f"E2B cannot create a sandbox from template {template!r}: {exc}"
                ) from exc
            raise sdk_error(exc, f"creating sandbox {sandbox_id}") from exc
        except SDK_ERRORS as exc:
            raise sdk_error(exc, f"creating sandbox {sandbox_id}") from exc
        sandbox = E2BSandbox(sandbox_id, sdk)
        self._known[sandbox_id] = sandbox.e2b_id
        log.info("sandbox.e2b_created", **_ids(sandbox_id, sandbox.e2b_id))
        try:
            await self._prepare(sandbox, spec)
        except BaseException:
            with contextlib.suppress(SandboxError):  # the first failure is the one to tell
                await self._kill(sandbox.e2b_id)  # nothing half made is left running (billed)
            raise
        return sandbox

    async def _run(self, sandbox: E2BSandbox, command: str, timeout: float) -> None:
        try:
            await sandbox.sdk.commands.run(
                command,
                envs={"GIT_TERMINAL_PROMPT": "0"},  # a private repository fails, never waits
                user=USER,
                timeout=timeout,
                request_timeout=FILE_DEADLINE,
            )
        except CommandExitException as exc:
            output = (exc.stderr or exc.stdout or "")[-2000:]
            if any(m in output.lower() for m in _MISSING):
                raise RepositoryNotFound(f"git clone failed: no such repository: {output}") from exc
            raise SandboxError(f"preparing the sandbox failed ({exc.exit_code}): {output}") from exc
        except SDK_ERRORS as exc:
            raise sdk_error(exc, "preparing the sandbox") from exc

    async def _prepare(self, sandbox: E2BSandbox, spec: SandboxSpec) -> None:
        """The workspace (a clone of the repository, if any), the network as the settings
        ask, then the ready mark."""
        ws = shlex.quote(WORKSPACE)
        await self._run(sandbox, f"mkdir -p {ws}", FILE_DEADLINE)
        if spec.repo_url:
            await self._run(
                sandbox,
                f"git clone --quiet -- {shlex.quote(spec.repo_url)} {ws} && "
                f"git -C {ws} config user.name 'Runyard Agent' && "
                f"git -C {ws} config user.email agent@runyard.invalid",
                CLONE_TIMEOUT,
            )
        if not spec.network:
            await guarded(
                lambda: sandbox.sdk.update_network({"allow_internet_access": False}),
                "turning the sandbox's internet access off",
            )
        await guarded(
            lambda: sandbox.sdk.files.write(
                READY, b"", user=USER, request_timeout=FILE_DEADLINE, use_octet_stream=True
            ),
            "marking the sandbox ready",
        )

    async def _ready(self, sandbox: E2BSandbox) -> bool:
        return bool(
            await guarded(
                lambda: sandbox.sdk.files.exists(READY, user=USER, request_timeout=FILE_DEADLINE),
                "checking the sandbox",
            )
        )

    async def get(self, sandbox_id: str) -> E2BSandbox:
        cached = self._known.get(sandbox_id)
        if cached is not None and (sandbox := await self._connect(sandbox_id, cached)):
            return sandbox
        e2b_id = await self._find(sandbox_id)
        if e2b_id is None or (sandbox := await self._connect(sandbox_id, e2b_id)) is None:
            raise SandboxError(f"sandbox {sandbox_id} does not exist on E2B")
        return sandbox

    async def _kill(self, e2b_id: str) -> None:
        await guarded(lambda: AsyncSandbox.kill(e2b_id, **self._opts), "killing a sandbox")

    async def destroy(self, sandbox_id: str) -> None:
        self._known.pop(sandbox_id, None)
        e2b_id = await self._find(sandbox_id)
        if e2b_id is not None:
            await self._kill(e2b_id)  # False (already gone) is fine too
            log.info("sandbox.e2b_killed", **_ids(sandbox_id, e2b_id))

    async def pause(self, sandbox_id: str) -> None:
        """Pause the microVM (memory and disk kept, nothing billed); a no-op if it is
        paused already or gone."""
        e2b_id = await self._find(sandbox_id)
        if e2b_id is None:
            return
        try:
            await AsyncSandbox.pause(e2b_id, **self._opts)
        except SandboxNotFoundException:
            return
        except SDK_ERRORS as exc:
            raise sdk_error(exc, f"pausing sandbox {sandbox_id}") from exc
        log.info("sandbox.e2b_paused", **_ids(sandbox_id, e2b_id))

    async def resume(self, sandbox_id: str) -> None:
        """Resume a paused sandbox (connecting resumes it); a no-op if it runs."""
        await self.get(sandbox_id)
        log.info("sandbox.e2b_resumed", **_ids(sandbox_id))


def e2b_provider(settings: Settings) -> E2BSandboxProvider:
    if not settings.e2b_api_key:
        raise SandboxUnavailable("the E2B provider needs E2B_API_KEY")
    return E2BSandboxProvider(
        api_key=settings.e2b_api_key,
        domain=settings.e2b_domain,
        api_url=settings.e2b_api_url,
        sandbox_url=settings.e2b_sandbox_url,
        timeout_seconds=settings.e2b_sandbox_timeout_seconds,
    )
