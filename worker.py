"""The Runyard worker: registers RunWorkflow and its activities on the task queue.

Run it with ``runyard worker`` (or ``python worker.py``). Activities that need clients
are methods of classes built here once, with their dependencies.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from activities.agent import AgentActivities, ModelRegistry
from activities.sandbox import SandboxActivities
from activities.store import StoreActivities
from activities.webhooks import DeliveryActivities
from runyard.db.engine import Database, migrate
from runyard.housekeeping import housekeeping
from runyard.logging import configure_logging
from runyard.models.anthropic_client import AnthropicModel
from runyard.models.scripted import ScriptedModel
from runyard.sandbox.base import SandboxProvider
from runyard.sandbox.local import LocalSandboxProvider, bwrap_path
from runyard.settings import Settings, get_settings
from runyard.temporal import connect
from runyard.webhooks.sender import Sender
from workflows.delivery import DeliveryWorkflow
from workflows.run import RunWorkflow

log = structlog.get_logger("runyard.worker")


def build_worker(client: Client, settings: Settings, db: Database) -> Worker:
    providers: dict[str, SandboxProvider] = {
        "local": LocalSandboxProvider(
            settings.sandboxes_dir, bwrap=bwrap_path(settings.sandbox_bwrap)
        ),
    }
    anthropic = (
        AnthropicModel(api_key=settings.anthropic_api_key, base_url=settings.anthropic_base_url)
        if settings.anthropic_api_key
        else None
    )
    models = ModelRegistry(scripted=ScriptedModel(), anthropic=anthropic)
    sandbox = SandboxActivities(db, settings, providers)
    agent = AgentActivities(db, models)
    store = StoreActivities(db, settings, providers)
    delivery = DeliveryActivities(db, Sender(allow_private=settings.allow_private_callbacks))
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[RunWorkflow, DeliveryWorkflow],
        activities=[
            sandbox.provision_sandbox,
            sandbox.run_tool,
            sandbox.destroy_sandbox,
            agent.run_agent_turn,
            store.collect_outputs,
            store.finish_run,
            store.mark_waiting,
            store.record_input,
            delivery.attempt_delivery,
        ],
        # Heartbeats go out at least every second, so a cancel reaches a busy activity fast.
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        default_heartbeat_throttle_interval=timedelta(seconds=1),
        graceful_shutdown_timeout=timedelta(seconds=5),
        # After a worker dies, its cached workflows move to another worker this fast
        # (Temporal's default is 10 s, which an answer or exec then waits out).
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=3),
    )


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    migrate(settings.db_url)
    db = Database(settings.db_url)
    client = await connect(settings)
    worker = build_worker(client, settings, db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker.started", task_queue=settings.task_queue, temporal=settings.temporal_address)
    chores = asyncio.create_task(housekeeping(client, db, settings))
    async with worker:
        await stop.wait()
    chores.cancel()
    await db.dispose()


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
