"""Every activity a workflow calls is registered on the worker: the workflow tests run
fake activities under the real names, so only this catches one the worker forgot (a
local activity that is not registered fails the step it guards)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any, cast

from temporalio import activity
from temporalio.client import Client

from runyard.db.engine import Database
from runyard.settings import Settings
from worker import all_activities

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("workflows", "schedules", "notifications")


def called_by_workflows() -> dict[str, str]:
    """activity name → where a workflow module names it (``SomeActivities.method``)."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            module = importlib.import_module(f"{package}.{path.stem}")
            for node in ast.walk(ast.parse(path.read_text())):
                if not (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id.endswith("Activities")
                ):
                    continue
                owner: Any = getattr(module, node.value.id, None)
                fn = getattr(owner, node.attr, None)
                defn = None if fn is None else activity._Definition.from_callable(fn)
                if defn is not None and defn.name is not None:
                    found[defn.name] = f"{package}/{path.name}"
    return found


def test_every_activity_a_workflow_calls_is_registered(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    acts = all_activities(cast(Client, None), settings, Database(settings.db_url))
    registered = set()
    for fn in [*acts.shared, *acts.host]:
        defn = activity._Definition.must_from_callable(fn)
        registered.add(defn.name)
    called = called_by_workflows()
    assert {"run_turn_and_tools", "request_stop", "run_tool"} <= called.keys()  # it reads
    missing = {name: where for name, where in called.items() if name not in registered}
    assert missing == {}
    # The host's own queue serves what touches a local sandbox, the cycle included.
    host = {activity._Definition.must_from_callable(fn).name for fn in acts.host}
    assert {"run_turn_and_tools", "run_tool", "collect_outputs"} <= host
