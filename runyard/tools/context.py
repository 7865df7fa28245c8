"""What the output tools need about the run: its ids, the settings, the git provider, the
artifact store and the relay that forwards pushed branches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from runyard.artifacts.store import ArtifactStore, artifact_store
from runyard.git.clone import mirror_path
from runyard.git.provider import GitProvider, provider_for
from runyard.git.relay import Relay
from runyard.sandbox.base import Sandbox
from runyard.settings import Settings


@dataclass
class ToolContext:
    """What the output tools need about the run; built by the ``run_tool`` activity."""

    run_id: str
    org_id: str
    repo: str | None
    settings: Settings
    sandbox_id: str
    known: dict[str, str] = field(default_factory=dict)  # branches forwarded: name → sha
    provider: GitProvider | None = None
    store: ArtifactStore | None = None
    # The store's answer, asked right before anything leaves for the outside (a push, a
    # pull request, an issue): is the run still active? Nothing leaves once it has ended.
    active: Callable[[], Awaitable[bool]] | None = None
    taken: frozenset[str] = frozenset()  # a fork's: branches its sources forwarded

    @staticmethod
    def build(
        settings: Settings,
        run_id: str,
        org_id: str,
        repo: str | None,
        sandbox_id: str,
        known: dict[str, str],
        active: Callable[[], Awaitable[bool]] | None = None,
        taken: frozenset[str] = frozenset(),
    ) -> ToolContext:
        return ToolContext(
            run_id,
            org_id,
            repo,
            settings,
            sandbox_id,
            dict(known),
            provider_for(repo, settings),
            artifact_store(settings),
            active,
            taken,
        )

    def relay(self, sandbox: Sandbox) -> Relay:
        return Relay(
            sandbox,
            mirror_path(self.settings, self.sandbox_id),
            self.settings,
            self.known,
            self.active,
            self.taken,
        )

    async def still_active(self) -> bool:
        return self.active is None or await self.active()
