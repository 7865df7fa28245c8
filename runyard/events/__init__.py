"""Typed events: the ``data`` model of each event type (``data``), the stored event as the
API answers it (``models``) and every event's idempotency key (``keys``)."""

from runyard.events import keys as keys
from runyard.events.data import DATA_MODELS as DATA_MODELS
from runyard.events.data import EventData as EventData
from runyard.events.models import EVENTS as EVENTS
from runyard.events.models import AnyEvent as AnyEvent
from runyard.events.models import Event as Event
from runyard.events.models import StoredEvent as StoredEvent
