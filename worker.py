"""The Runyard worker: registers the workflows and activities on the task queue and runs
them, and makes sure the deployment's periodic jobs exist (the outbox pump, the event
retention schedule, the sandbox reaper's schedule).

Each worker polls two task queues: the shared one (``runyard``: workflows, model turns,
provisioning, the store, notifications), which any host serves, and its host's own
(``runyard@<host name>``: the tool calls, collection and destruction of the local
sandboxes this host provisioned, whose files are on its disk).

Run it with ``runyard worker`` (or ``python worker.py``). Activities that need clients
are methods of classes built here once, with their dependencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleUpdate,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.agent import AgentActivities, ModelRegistry
from activities.approvals import ApprovalActivities
from activities.checkpoints import CheckpointActivities
from activities.cycle import CycleActivities
from activities.lifecycle import LifecycleActivities
from activities.messages import MessageActivities
from activities.reaper import ReaperActivities
from activities.retention import RetentionActivities
from activities.sandbox import SandboxActivities
from activities.sandbox_setup import SandboxSetupActivities
from activities.threads import ThreadActivities
from notifications.activities import DeliveryActivities, OutboxActivities
from notifications.delivery import DeliveryWorkflow
from notifications.messages import PumpInput
from notifications.pump import OutboxPumpWorkflow, pump_workflow_id
from notifications.sender import Sender
from runyard import tracing
from runyard.datadir import private_data_dir
from runyard.db.engine import Database, migrate
from runyard.gc_tuning import freeze_heap
from runyard.llm.anthropic_client import AnthropicModel
from runyard.llm.scripted import ScriptedModel
from runyard.logging import configure_logging
from runyard.metrics_server import serve_worker_metrics
from runyard.sandbox.base import SandboxProvider
from runyard.sandbox.local import local_provider
from runyard.sandbox.release import release_local_sandboxes
from runyard.settings import Settings, get_settings
from runyard.temporal import connect
from runyard.worker_identity import StoreConflict, check_task_queue, worker_identity
from schedules.activities import ScheduleActivities
from schedules.workflow import ScheduleFireWorkflow
from workflows.reaper import ReapInput, SandboxReaperWorkflow, reaper_schedule_id
from workflows.retention import EventRetentionWorkflow, retention_schedule_id
from workflows.run import RunWorkflow

log = structlog.get_logger("runyard.worker")


@dataclass(frozen=True)
class Activities:
    shared: list[Any]  # any host runs them
    host: list[Any]  # they touch a local sandbox: only the host that holds it


def activities(settings: Settings, db: Database) -> Activities:
    """Every activity this worker runs, built with its dependencies."""
    # Built once per worker; it announces loudly what this host's sandboxes cannot enforce.
    providers: dict[str, SandboxProvider] = {"local": local_provider(settings)}
    if settings.e2b_api_key:  # the key stays in the worker: no sandbox env carries it
        # Imported here: the e2b SDK takes about a second to load, for workers that use it.
        from runyard.sandbox.e2b import e2b_provider

        providers["e2b"] = e2b_provider(settings)
    anthropic = (
        AnthropicModel(api_key=settings.anthropic_api_key, base_url=settings.anthropic_base_url)
        if settings.anthropic_api_key
        else None
    )
    models = ModelRegistry(scripted=ScriptedModel(), anthropic=anthropic)
    sandbox = SandboxActivities(db, settings, providers)
    agent = AgentActivities(db, models)
    lifecycle = LifecycleActivities(db)
    delivery = DeliveryActivities(db, Sender(allow_private=settings.allow_private_callbacks))
    outbox = OutboxActivities(db, settings)
    retention = RetentionActivities(db, settings)
    setup = SandboxSetupActivities(db, settings, providers)
    reaper = ReaperActivities(db, providers)
    messages = MessageActivities(db)
    threads = ThreadActivities(db, settings.task_queue)
    checkpoints = CheckpointActivities(db, settings, providers)
    approvals = ApprovalActivities(db)
    cycle = CycleActivities(agent, sandbox)
    on_sandbox = [
        sandbox.run_tool,
        cycle.run_turn_and_tools,
        sandbox.collect_outputs,
        sandbox.destroy_sandbox,
        sandbox.pause_sandbox,
        sandbox.resume_sandbox,
        setup.setup_sandbox,
        reaper.reap_sandboxes,
        checkpoints.checkpoint_workspace,
    ]
    shared = [
        lifecycle.start_run,
        lifecycle.mark_running,
        lifecycle.replace_sandbox,
        lifecycle.mark_waiting,
        lifecycle.record_answer,
        lifecycle.queue_message,
        lifecycle.finish_run,
        lifecycle.request_stop,
        lifecycle.cancel_workflow,
        sandbox.provision_sandbox,
        # Also here for runs provisioned before sandboxes had a host queue, and for
        # sandboxes no host holds (E2B).
        *on_sandbox,
        agent.run_agent_turn,
        delivery.attempt_delivery,
        outbox.pump_outbox,
        retention.purge_expired_events,
        messages.record_message,
        messages.deliver_messages,
        threads.advance_thread,
        threads.close_unfinished_calls,
        approvals.gate_tool_calls,
        approvals.record_decisions,
        approvals.expire_approvals,
    ]
    return Activities(shared=shared, host=on_sandbox)


# Runyard's workflows run without Temporal's workflow sandbox. The sandbox checked nothing
# of them: their packages (workflows, notifications, schedules) were passed through it,
# which a passed-through module's calls are not (bench.ab: 260 -> 225 ms of worker+API CPU
# for a 5-tool run when that was done). What it still cost was its machinery on every
# activation: for each payload sequence, three times each way, Temporal asks the workflow
# for its serialization context by exec-ing a statement inside the sandbox with its
# importer applied (108 calls a 5-tool run, 12% of the worker's CPU in a py-spy profile).
# Without it, bench.ab measured worker+API CPU 125 -> 107.5 ms for a 5-tool run and
# 307.5 -> 277.5 for a 25-tool run (SQLite, four interleaved pairs, every pair lower).
# Without a sandbox every run shares the modules' globals, as passed-through modules did:
# Runyard's workflow packages keep no state a run could change (their module-level names
# are constants, classes and functions; notifications registers its outbox hook once, at
# import, outside any workflow).
# The check moves to the tests: tests/workflows runs every workflow under the strict
# default sandbox, which refuses a non-deterministic call (time, random, I/O), and the
# replay test replays the recorded histories of RunWorkflow under it too.
WORKFLOW_RUNNER = UnsandboxedWorkflowRunner()


def all_activities(client: Client, settings: Settings, db: Database) -> Activities:
    """``activities`` and the schedules' (which start runs through ``client``)."""
    acts = activities(settings, db)
    fires = ScheduleActivities(db, settings, client)
    acts.shared.extend(
        [fires.create_scheduled_run, fires.start_scheduled_run, fires.pause_schedule]
    )
    return acts


def build_workers(client: Client, settings: Settings, db: Database) -> list[Worker]:
    """The shared task queue's worker and this host's."""
    acts = all_activities(client, settings, db)
    common: dict[str, Any] = {
        "interceptors": tracing.worker_interceptors(),  # after the client's tracing one
        # Heartbeats go out at least every second, so a cancel reaches a busy activity fast.
        "max_heartbeat_throttle_interval": timedelta(seconds=1),
        "default_heartbeat_throttle_interval": timedelta(seconds=1),
        "graceful_shutdown_timeout": timedelta(seconds=settings.worker_shutdown_seconds),
        # Names the store: a worker of another store on this task queue is refused.
        "identity": worker_identity(settings),
    }
    shared = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[
            RunWorkflow,
            DeliveryWorkflow,
            OutboxPumpWorkflow,
            EventRetentionWorkflow,
            SandboxReaperWorkflow,
            ScheduleFireWorkflow,
        ],
        activities=acts.shared,
        # After a worker dies, its cached workflows move to another worker this fast
        # (Temporal's default is 10 s, which an answer or exec then waits out).
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=3),
        workflow_runner=WORKFLOW_RUNNER,
        **common,
    )
    host = Worker(client, task_queue=settings.host_task_queue, activities=acts.host, **common)
    return [shared, host]


async def ensure_periodic_jobs(client: Client, settings: Settings) -> None:
    """Start the outbox pump and the hourly retention schedule unless they exist: one of
    each per deployment, however many workers start."""
    await client.start_workflow(
        OutboxPumpWorkflow.run,
        PumpInput(),
        id=pump_workflow_id(settings.task_queue),
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            EventRetentionWorkflow.run,
            id=f"runyard-event-retention-{settings.task_queue}",
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
    )
    try:
        await client.create_schedule(retention_schedule_id(settings.task_queue), schedule)
    except ScheduleAlreadyRunningError:
        pass
    await ensure_reaper_schedule(client, settings)


async def ensure_reaper_schedule(client: Client, settings: Settings) -> None:
    """This host's sandbox reaper, every ``RUNYARD_SANDBOX_REAP_SECONDS``: one schedule
    per worker host (its round runs on the host's queue, where its sandboxes are),
    created by the host's first worker, its interval brought to the setting when a
    worker starts."""
    every = timedelta(seconds=settings.sandbox_reap_seconds)
    schedule_id = reaper_schedule_id(settings.host_task_queue)
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            SandboxReaperWorkflow.run,
            ReapInput(task_queue=settings.host_task_queue, seconds=int(every.total_seconds())),
            id=schedule_id,
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
    )
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        await client.get_schedule_handle(schedule_id).update(
            lambda _: ScheduleUpdate(schedule=schedule)
        )


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run the worker until ``stop`` is set (by default: SIGINT or SIGTERM)."""
    private_data_dir(settings.data_dir)  # before anything is created there
    migrate(settings.db_url)
    db = Database(settings.db_url, reads_on_loop=True)  # its reads are its activities'
    tracing.setup("runyard-worker")  # on only with OTEL_EXPORTER_OTLP_ENDPOINT
    runtime = serve_worker_metrics(settings)  # with RUNYARD_WORKER_METRICS_PORT
    client = await connect(settings, runtime=runtime)
    await check_task_queue(client, settings)  # one store per task queue
    workers = build_workers(client, settings, db)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    await ensure_periodic_jobs(client, settings)
    freeze_heap()
    log.info(
        "worker.started",
        task_queue=settings.task_queue,
        host_task_queue=settings.host_task_queue,
        temporal=settings.temporal_address,
    )
    try:
        async with contextlib.AsyncExitStack() as running:
            for worker in workers:
                await running.enter_async_context(worker)
            await stop.wait()
    finally:
        # No sandbox process, mount or cgroup outlives the worker; the sandboxes' files
        # stay for the runs (runyard/sandbox/release.py).
        released = release_local_sandboxes()
        if released:
            log.info("worker.sandboxes_released", count=released)
        await db.dispose()


def main(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    try:
        asyncio.run(run_worker(settings))
    except StoreConflict as exc:  # one line, not a traceback
        print(f"runyard worker: {exc}", file=sys.stderr, flush=True)
        # Not through the interpreter's finalization: with the Temporal core's threads
        # still there it aborted now and then (PyGILState_Release).
        os._exit(2)


if __name__ == "__main__":
    main()
