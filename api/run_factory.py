"""The API's side of run creation (``runyard.runs``): the Temporal engine it starts runs
on, and ``invalid``, the routes' 400 for a refused field."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from api.deps import DbDep, SettingsDep, TemporalDep
from api.errors import ProblemError
from api.orchestrator import TemporalConnector, run_input
from runyard.db.tables import Run
from runyard.domain import ErrorCode
from runyard.errors import OrchestratorUnavailable
from runyard.runs import RunService
from runyard.settings import Settings
from workflows.client import RunClient


def invalid(field: str, message: str, code: str = "invalid") -> ProblemError:
    return ProblemError(
        400,
        ErrorCode.VALIDATION_FAILED,
        f"{field}: {message}",
        extra={"errors": [{"field": field, "message": message, "code": code}]},
    )


class TemporalEngine:
    """``runyard.runs.Engine`` over the API's connection to the run workflows."""

    def __init__(self, temporal: TemporalConnector, settings: Settings) -> None:
        self.temporal, self.settings = temporal, settings

    async def start(self, run: Run, *, execute: bool) -> None:
        runs = await self._runs()
        await runs.start(run_input(run, self.settings), summary=run.prompt, execute=execute)

    async def discard(self, run_id: str, reason: str) -> None:
        await (await self._runs()).discard(run_id, reason)

    async def _runs(self) -> RunClient:
        try:
            return await self.temporal()
        except ProblemError as exc:  # the connector's 502: Temporal could not be reached
            raise OrchestratorUnavailable(exc.detail) from exc


def run_service(db: DbDep, settings: SettingsDep, temporal: TemporalDep) -> RunService:
    return RunService(db, settings, TemporalEngine(temporal, settings))


RunServiceDep = Annotated[RunService, Depends(run_service)]
