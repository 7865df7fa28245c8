"""What ``pip install`` puts on the path: every package the services import.

An editable install maps each top-level package to the checkout, so a package left out
of ``[tool.setuptools.packages.find]`` imports from the checkout's folder only: the
``runyard`` command run anywhere else fails (found by hand: ``schedules`` was missing,
and ``runyard dev`` outside the checkout stopped at the worker's first import).
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_SHIPPED = {"tests", "bench"}  # the test suite and the benchmarks run from a checkout


def test_every_top_level_package_is_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {
        p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in NOT_SHIPPED
    }
    missing = {p for p in packages if not any(fnmatch.fnmatch(p, pat) for pat in include)}
    assert not missing, f"add to [tool.setuptools.packages.find] include: {sorted(missing)}"
