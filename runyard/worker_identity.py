"""A worker's identity names its store, so that a worker of another store on the same
task queue is refused at start.

Every worker of one task queue must use one store: a workflow task or activity of a run
created in store A and picked up by a worker of store B fails with RUN_NOT_FOUND (a
second ``runyard worker`` in another folder, on the same Temporal, took half the runs).
The identity Temporal shows for each poller carries ``store=<hash>``, a short hash of the
database URL without its password; at start the worker describes the shared task
queue's pollers and refuses to start when one seen in the last minute has another hash.
"""

from __future__ import annotations

import hashlib
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import make_url
from temporalio.client import Client

from runyard.settings import Settings

STORE_TAG = " store="
# A poller seen this recently is a running worker (pollers poll again within a minute).
FRESH = timedelta(minutes=1)


class StoreConflict(Exception):
    """Another store's worker polls this task queue."""


def store_hash(db_url: str) -> str:
    """8 hex digits naming the store: its URL without the password, a SQLite path resolved."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        url = url.set(database=str(Path(url.database).resolve()))
    text = url.render_as_string(hide_password=True)  # the password as ***
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def worker_identity(settings: Settings) -> str:
    """Temporal's default identity (``pid@host``) plus the store's hash."""
    return f"{os.getpid()}@{socket.gethostname()}{STORE_TAG}{store_hash(settings.db_url)}"


async def check_task_queue(client: Client, settings: Settings) -> None:
    """Raise ``StoreConflict`` when a worker of another store polled the shared task queue
    (workflow or activity tasks) in the last minute."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    mine = store_hash(settings.db_url)
    now = datetime.now(UTC)
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal_namespace,
                task_queue=TaskQueue(name=settings.task_queue),
                task_queue_type=kind,
            )
        )
        for poller in described.pollers:
            _, tag, theirs = poller.identity.partition(STORE_TAG)
            seen = poller.last_access_time.ToDatetime(tzinfo=UTC)
            if tag and theirs != mine and now - seen < FRESH:
                raise StoreConflict(
                    f"worker {poller.identity} of another store polls task queue "
                    f"'{settings.task_queue}' on {settings.temporal_address} (this store: "
                    f"{mine}): its runs would fail with RUN_NOT_FOUND here; give this "
                    "worker its own RUNYARD_TASK_QUEUE or TEMPORAL_NAMESPACE, or the same "
                    "store (RUNYARD_DATA_DIR / RUNYARD_DATABASE_URL)"
                )
