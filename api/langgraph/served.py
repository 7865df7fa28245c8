"""What ``/lg`` serves on top of :class:`~api.langgraph.hooks.Baseline`, now that
approvals and thread strategies exist:

- ``multitask_strategy`` ``enqueue``, ``interrupt`` and ``rollback`` are Runyard's thread
  strategies (``runyard.runs.thread_order``), ``reject`` stays the default.
- A tool call that waits for a person's approval is an ``__interrupt__`` in the
  HumanInterrupt shape of ``langgraph.prebuilt.interrupt`` (its id is the approval's,
  ``apr_…``), with every response allowed; ``command.resume`` decides it with
  HumanResponses: ``accept`` approves, ``edit`` runs the call with ``args.args``,
  ``response`` denies it with the text as the message the model is told, ``ignore``
  denies it without one.

A checkpoint is a transcript step, or the Runyard checkpoint of a turn that changed files
(``api.langgraph.mapping``); a run starts from the thread's latest one only, since a
Runyard fork is a run outside any thread (see docs/langgraph.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from api.approvals import BatchItem
from api.langgraph.hooks import Baseline
from runyard.db.tables import Run
from runyard.domain import RunStatus
from runyard.errors import InvalidInput, NotServed

_RESUME = "command.resume"


def approval_interrupt(approval: dict[str, Any]) -> dict[str, Any]:
    """A pending approval (the ``apr_…`` object) as LangGraph's HumanInterrupt."""
    tool = str(approval.get("tool"))
    return {
        "id": approval["id"],
        "value": {
            "action_request": {"action": tool, "args": approval.get("input") or {}},
            "config": {
                "allow_ignore": True,
                "allow_respond": True,
                "allow_edit": True,
                "allow_accept": True,
            },
            "description": (
                f"The agent wants to run {tool}. accept runs it, edit runs it with your "
                "args, response or ignore deny it (a response is told to the agent)."
            ),
        },
    }


def _one(approval_id: str, tool: str, response: Any) -> BatchItem:
    """One HumanResponse as the decision of approval ``approval_id``."""
    if not isinstance(response, dict) or response.get("type") not in (
        "accept", "edit", "response", "ignore",
    ):  # fmt: skip
        raise InvalidInput(
            "an approval is decided by a HumanResponse: {'type': 'accept'|'edit'|'response'"
            "|'ignore', 'args': …}",
            field=_RESUME,
        )
    kind, args = response["type"], response.get("args")
    if kind == "accept":
        return BatchItem(id=approval_id, decision="approve")
    if kind == "ignore":
        return BatchItem(id=approval_id, decision="deny")
    if kind == "response":
        if not isinstance(args, str) or not args.strip():
            raise InvalidInput("a 'response' needs its text as args", field=f"{_RESUME}.args")
        if len(args) > 4096:
            raise InvalidInput("a 'response' is at most 4096 characters", field=f"{_RESUME}.args")
        return BatchItem(id=approval_id, decision="deny", message=args)
    # edit: args is an ActionRequest, {"action": <the tool>, "args": {<its new input>}}
    if not isinstance(args, dict) or not isinstance(args.get("args"), dict):
        raise InvalidInput(
            "an 'edit' needs args {'action': <tool>, 'args': {<input>}}", field=f"{_RESUME}.args"
        )
    if args.get("action", tool) != tool:
        raise InvalidInput(
            f"an edit cannot change the tool ({tool})", field=f"{_RESUME}.args.action"
        )
    return BatchItem(id=approval_id, decision="edit", input=args["args"])


def decisions_of(resume: Any, pending: list[dict[str, Any]]) -> list[BatchItem]:
    """The decisions that ``command.resume`` makes of the ``pending`` approval interrupts:
    one HumanResponse (one approval waits), a list of them (one per interrupt, in their
    order), or ``{interrupt id: HumanResponse}`` (those approvals only)."""
    tools = {str(i["id"]): str(i["value"]["action_request"]["action"]) for i in pending}
    if isinstance(resume, dict) and resume and set(resume) <= set(tools):
        return [_one(i, tools[i], r) for i, r in resume.items()]
    if isinstance(resume, list):
        if len(resume) != len(pending):
            raise InvalidInput(
                f"{len(pending)} approval(s) wait: give one HumanResponse each, in order, "
                "or {interrupt id: HumanResponse}",
                field=_RESUME,
            )
        pairs = zip(pending, resume, strict=True)
        return [_one(str(i["id"]), tools[str(i["id"])], r) for i, r in pairs]
    if len(pending) != 1:
        raise InvalidInput(
            f"{len(pending)} approvals wait: give a list of HumanResponses or "
            "{interrupt id: HumanResponse}",
            field=_RESUME,
        )
    only = str(pending[0]["id"])
    return [_one(only, tools[only], resume)]


class Served(Baseline):
    flags: dict[str, bool] = {
        **Baseline.flags,
        "approvals": True,
        "multitask_strategies": True,  # reject, enqueue, interrupt, rollback
    }

    def check_multitask(self, strategy: str | None) -> None:
        return None  # every LangGraph strategy is a Runyard thread strategy

    def check_start(self, checkpoint_id: str | None, head: str | None) -> None:
        if checkpoint_id is not None and checkpoint_id != head:
            raise NotServed(
                f"starting from checkpoint {checkpoint_id}: a run starts from the thread's "
                f"latest checkpoint ({head}) only. Runyard forks a run at a turn (POST "
                "/v1/runs/{run id}/fork) into a new run outside any thread, so a thread "
                "does not branch"
            )

    def approvals(self, run: Run) -> list[dict[str, Any]]:
        if run.status != RunStatus.WAITING_FOR_INPUT or run.waiting_for != "approval":
            return []
        return [
            approval_interrupt(a)
            for a in run.pending_approvals or []
            if a.get("status", "pending") == "pending"
        ]

    def decisions(self, resume: Any, pending: list[dict[str, Any]]) -> list[BatchItem]:
        return decisions_of(resume, pending)


def extensions(request: Request) -> Baseline:
    """The app's own (``app.state.lg_extensions``), else what is served on main."""
    found = getattr(request.app.state, "lg_extensions", None)
    return found if isinstance(found, Baseline) else Served()
