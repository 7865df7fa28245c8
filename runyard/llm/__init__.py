"""Model clients: ``anthropic`` (the official SDK) and ``scripted`` (offline, deterministic)."""
