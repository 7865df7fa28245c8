"""A run's outputs beyond the final text: recorded with an ``output.detected`` event each,
in the same transaction as the tool result that produced them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog
from sqlalchemy.orm import Session

from runyard.db.tables import Artifact, Run
from runyard.domain import TERMINAL_STATUSES
from runyard.events import data as ev
from runyard.events import keys
from runyard.store.events import append_events

# What may still be added to a run that has ended: the ``changes.patch`` that its own
# ending keeps (a cancelled run's is collected after the cancel is written). Nothing that
# reached the outside (a branch, a pull request, an issue) and no other artifact is
# recorded on a terminal run: an activity that finishes or is retried late adds nothing.
AFTER_END = frozenset({"patch"})


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
    """Add ``outputs`` (and artifact rows) to the locked ``run``; one event per output.

    On a run that has ended only ``AFTER_END`` outputs (and their artifacts) are kept."""
    outs = list(outputs)
    arts = list(artifacts)
    if run.status in TERMINAL_STATUSES:
        kept = [o for o in outs if o.get("type") in AFTER_END]
        ids = {o.get("artifactId") for o in kept}
        dropped = [o.get("type") for o in outs if o not in kept]
        dropped += ["artifact" for a in arts if a.id not in ids]
        if dropped:
            structlog.get_logger("runyard.outputs").warning(
                "outputs.refused",
                run_id=run.id,
                workflow_id=run.id,
                org_id=run.org_id,
                status=run.status,
                refused=dropped,
            )
        outs, arts = kept, [a for a in arts if a.id in ids]
    for art in arts:
        s.add(art)
    if not outs:
        return
    run.outputs = merge_outputs(run.outputs or [], outs)
    s.add(run)
    events = [
        ev.OutputDetected.model_validate(o).event(keys.tool_output(key, i))
        for i, o in enumerate(outs)
    ]
    append_events(s, run, events)
