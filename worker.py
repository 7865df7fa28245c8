"""The Runyard worker: registers the workflows and activities on the task queue and runs
them, and makes sure the deployment's periodic jobs exist (the outbox pump, the event
retention schedule).

Run it with ``runyard worker`` (or ``python worker.py``). Activities that need clients
are methods of classes built here once, with their dependencies.
"""

from __future__ import annotations

import asyncio
import signal
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
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from activities.agent import AgentActivities, ModelRegistry
from activities.lifecycle import LifecycleActivities
from activities.retention import RetentionActivities
from activities.sandbox import SandboxActivities
from notifications.activities import DeliveryActivities, OutboxActivities, PumpInput
from notifications.delivery import DeliveryWorkflow
from notifications.pump import OutboxPumpWorkflow, pump_workflow_id
from notifications.sender import Sender
from runyard import tracing
from runyard.db.engine import Database, migrate
from runyard.llm.anthropic_client import AnthropicModel
from runyard.llm.scripted import ScriptedModel
from runyard.logging import configure_logging
from runyard.metrics_server import serve_worker_metrics
from runyard.sandbox.base import SandboxProvider
from runyard.sandbox.local import local_provider
from runyard.settings import Settings, get_settings
from runyard.temporal import connect
from workflows.retention import EventRetentionWorkflow, retention_schedule_id
from workflows.run import RunWorkflow

log = structlog.get_logger("runyard.worker")


def activities(settings: Settings, db: Database) -> list[Any]:
    """Every activity this worker runs, built with its dependencies."""
    # Built once per worker; it announces loudly what this host's sandboxes cannot enforce.
    providers: dict[str, SandboxProvider] = {"local": local_provider(settings)}
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
    return [
        lifecycle.start_run,
        lifecycle.mark_running,
        lifecycle.mark_waiting,
        lifecycle.record_answer,
        lifecycle.queue_message,
        lifecycle.finish_run,
        lifecycle.cancel_workflow,
        sandbox.provision_sandbox,
        sandbox.run_tool,
        sandbox.collect_outputs,
        sandbox.destroy_sandbox,
        agent.run_agent_turn,
        delivery.attempt_delivery,
        outbox.pump_outbox,
        retention.purge_expired_events,
    ]


def build_worker(client: Client, settings: Settings, db: Database) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[RunWorkflow, DeliveryWorkflow, OutboxPumpWorkflow, EventRetentionWorkflow],
        activities=activities(settings, db),
        interceptors=tracing.worker_interceptors(),  # the client's tracing one comes first
        # Heartbeats go out at least every second, so a cancel reaches a busy activity fast.
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        default_heartbeat_throttle_interval=timedelta(seconds=1),
        graceful_shutdown_timeout=timedelta(seconds=5),
        # After a worker dies, its cached workflows move to another worker this fast
        # (Temporal's default is 10 s, which an answer or exec then waits out).
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=3),
    )


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


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run the worker until ``stop`` is set (by default: SIGINT or SIGTERM)."""
    migrate(settings.db_url)
    db = Database(settings.db_url)
    tracing.setup("runyard-worker")  # on only with OTEL_EXPORTER_OTLP_ENDPOINT
    runtime = serve_worker_metrics(settings)  # with RUNYARD_WORKER_METRICS_PORT
    client = await connect(settings, runtime=runtime)
    worker = build_worker(client, settings, db)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    await ensure_periodic_jobs(client, settings)
    log.info("worker.started", task_queue=settings.task_queue, temporal=settings.temporal_address)
    try:
        async with worker:
            await stop.wait()
    finally:
        await db.dispose()


def main(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
