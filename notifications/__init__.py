"""Outgoing notifications, all of them: org webhooks (signed, Standard Webhooks), run
callbacks and watchers.

- ``outbox``: delivery rows, written in the same store transaction as the event they
  announce (``enqueue`` is the event store's append hook, registered on import), so
  neither exists without the other.
- ``pump``: ``OutboxPumpWorkflow``, one per deployment, starts a ``DeliveryWorkflow``
  for each delivery the outbox holds.
- ``delivery``: ``DeliveryWorkflow``, one message to one URL on the retry schedule.
- ``activities``: the delivery attempt and the pump's sweep.
- ``sender``: the HTTP POST, signed, pinned to the address that was checked.

Which addresses a callback or webhook may reach is ``runyard/ssrf.py``: the same policy
guards client-given repository URLs, so it lives in the shared core. ``outbox`` and
``sender`` know no workflow. The core (``runyard/``) imports nothing from here: the
outbox registers itself with the event store when it is imported, and the API and the
worker both import it (``tests/unit/test_layering.py`` checks). This package's
``__init__`` imports nothing: the workflow sandbox imports it with the workflows.
"""
