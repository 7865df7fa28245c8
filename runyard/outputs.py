"""A run's outputs beyond the final text: recorded with an ``output.detected`` event each,
in the same transaction as the tool result that produced them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from runyard.db.tables import Artifact, Run
from runyard.store.events import NewEvent, append_events


def merge_outputs(
    existing: list[dict[str, Any]], new: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``existing`` plus ``new``; a branch pushed again replaces its entry in place."""
    merged = [dict(o) for o in existing]
    for out in new:
        same = next(
            (
                i
                for i, o in enumerate(merged)
                if out.get("type") == o.get("type") == "branch" and o.get("name") == out.get("name")
            ),
            None,
        )
        if same is None:
            merged.append(dict(out))
        else:
            merged[same] = dict(out)
    return merged


def known_branches(run: Run) -> dict[str, str]:
    """The branches already forwarded upstream, by name, with their sha."""
    return {
        str(o["name"]): str(o["sha"])
        for o in run.outputs or []
        if o.get("type") == "branch" and o.get("name") and o.get("sha")
    }


def record_outputs(
    s: Session,
    run: Run,
    outputs: Iterable[dict[str, Any]],
    key: str,
    artifacts: Iterable[Artifact] = (),
) -> None:
    """Add ``outputs`` (and artifact rows) to the locked ``run``; one event per output."""
    outs = list(outputs)
    for art in artifacts:
        s.add(art)
    if not outs:
        return
    run.outputs = merge_outputs(run.outputs or [], outs)
    s.add(run)
    append_events(
        s, run, [NewEvent(f"{key}.output.{i}", "output.detected", o) for i, o in enumerate(outs)]
    )
