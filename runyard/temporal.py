"""Connecting to Temporal, always with the pydantic data converter (encrypting payloads
when ``RUNYARD_PAYLOAD_KEYS`` is set: ``runyard/encryption.py``)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.runtime import Runtime

from runyard import tracing
from runyard.encryption import data_converter
from runyard.settings import Settings


async def connect(
    settings: Settings, *, lazy: bool = False, runtime: Runtime | None = None
) -> Client:
    """A client; with tracing on (``runyard/tracing.py``) it carries the trace context."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        lazy=lazy,
        interceptors=tracing.client_interceptors(),
        runtime=runtime,
    )
