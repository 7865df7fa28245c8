"""Outgoing notifications, all of them: org webhooks (signed, Standard Webhooks), run
callbacks and watchers.

- ``outbox``: delivery rows, written in the same store transaction as the event they
  announce (the event store calls ``enqueue``), so neither exists without the other.
- ``pump``: ``OutboxPumpWorkflow``, one per deployment, starts a ``DeliveryWorkflow``
  for each delivery the outbox holds.
- ``delivery``: ``DeliveryWorkflow``, one message to one URL on the retry schedule.
- ``activities``: the delivery attempt and the pump's sweep.
- ``sender``: the HTTP POST, signed, pinned to the address that was checked.
- ``ssrf``: which addresses a callback or webhook may reach.

``outbox``, ``sender`` and ``ssrf`` know no workflow; the API uses ``ssrf`` to refuse a
URL at registration, the event store uses ``outbox``.
"""
