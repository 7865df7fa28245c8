"""Runs in flight stay safe from workflow changes: the recorded histories of
representative runs replay against the current ``RunWorkflow`` without a
nondeterminism error.

The histories under ``histories/`` were recorded by the workflow tests
(``RUNYARD_RECORD_HISTORIES=1 pytest tests/workflows``): a completed run, a question
asked and answered, a run cancelled while a tool ran, a run failed by a guardrail, and a
run that continued as new (each of its Temporal runs), a run whose sandbox host was
lost and rebuilt elsewhere. ``cancelled-while-running`` was
recorded before the ``keep-changes-of-every-ending`` patch and replays its old branch;
``cancelled-keeping-changes`` was recorded after it and replays the new one; likewise
``asked-and-answered`` predates ``pause-while-waiting`` and ``asked-paused-answered``
follows it, ``completed`` predates ``destroy-beside-end`` and
``completed-destroy-beside-end`` follows it, ``set-up`` is a run whose template has a
setup script, ``cancelled-not-forwarding`` follows ``no-forwarding-after-cancel`` and
``cancelled-through-temporal`` follows ``temporal-cancel-ends-first``; ``superseded`` is
a scheduled run a newer fire replaced (the ``replaced_by_schedule`` signal); ``encrypted`` was
recorded with ``RUNYARD_PAYLOAD_KEYS`` on. Every history replays with the encrypting data
converter, the plain ones included: turning encryption on never breaks a run in flight. A change
``cancelled-through-temporal`` follows ``temporal-cancel-ends-first``, ``checkpointed``
follows ``checkpoint-at-turn-boundary`` (issue 26), ``approvals-decided`` is a run with
an approval policy (``tool-approvals``), and ``turn-and-tools``,
``turn-and-tools-closed`` and ``turn-and-tools-host-lost`` follow ``turn-and-tools`` (a
model turn and its tool calls in one activity, issue 28); every history recorded before
it replays one activity per step. A change that would break a run in flight fails
here: guard it with ``workflow.patched()`` and record a new history beside the old
ones, never in place of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from runyard.encryption import PayloadKeys, data_converter_for
from tests.workflows.conftest import RECORDING_KEYS
from workflows.run import RunWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_the_representative_runs_are_recorded() -> None:
    names = {path.name.split(".")[0] for path in HISTORIES}
    assert names >= {
        "completed",
        "asked-and-answered",
        "cancelled-while-running",
        "cancelled-keeping-changes",
        "failed-max-turns",
        "continued-as-new",
        "sandbox-host-lost",
        "asked-paused-answered",
        "set-up",
        "cancelled-not-forwarding",
        "cancelled-through-temporal",
        "encrypted",
        "superseded",
        "checkpointed",
        "approvals-decided",
        "turn-and-tools",
        "turn-and-tools-closed",
        "turn-and-tools-host-lost",
    }


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    converter = data_converter_for(PayloadKeys.parse(RECORDING_KEYS))
    replayer = Replayer(workflows=[RunWorkflow], data_converter=converter)
    history = WorkflowHistory.from_json("run_replayed", path.read_text())
    await replayer.replay_workflow(history)
