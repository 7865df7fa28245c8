"""Sandbox ids: which run a sandbox belongs to, and which of its sandboxes it is.

A run's first sandbox is ``sbx_<x>`` for run ``run_<x>``; the sandbox rebuilt after its
host was lost for the n-th time is ``sbx_<x>-<n>``. The ids are deterministic, so a
retried or restarted provision finds the sandbox it was making.
"""

from __future__ import annotations

PREFIX = "sbx_"


def sandbox_id_for(run_id: str, generation: int = 0) -> str:
    base = PREFIX + run_id.removeprefix("run_")
    return f"{base}-{generation}" if generation else base


def run_id_for(sandbox_id: str) -> str | None:
    """The run a Runyard sandbox belongs to (any generation); None if not Runyard's."""
    rest = sandbox_id.removeprefix(PREFIX).split("-", 1)[0]
    if not sandbox_id.startswith(PREFIX) or not rest:
        return None
    return "run_" + rest


def generation_of(sandbox_id: str) -> int:
    _, _, gen = sandbox_id.partition("-")
    return int(gen) if gen.isdigit() else 0
