"""Outgoing notifications: org webhooks (signed), run callbacks and watchers."""
