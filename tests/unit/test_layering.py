"""The layering of the code base, read from the AST of every module (every import,
also those inside functions and under ``TYPE_CHECKING``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ("api", "notifications", "activities", "workflows", "cli", "schedules")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], base]).strip(".")
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_the_core_imports_no_feature_package() -> None:
    offenders = []
    for path in sorted((ROOT / "runyard").rglob("*.py")):
        for name in sorted(_imports(path)):
            if name.split(".")[0] in FEATURES:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("notifications.activities", "notifications.delivery"),
        ("runyard.sandbox.local", "runyard.sandbox.local_sandbox"),
    ],
)
def test_no_import_circle_between(a: str, b: str) -> None:
    imports = {m: _imports(ROOT.joinpath(*m.split(".")).with_suffix(".py")) for m in (a, b)}
    assert not (b in imports[a] and a in imports[b]), f"{a} and {b} import each other"


def _path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _reached(entry: str) -> set[str]:
    """The modules of this repository that importing ``entry`` imports (packages too)."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for n in range(1, len(parts) + 1):
            module = ".".join(parts[:n])
            path = _path(module)
            if module in seen or path is None:
                continue
            seen.add(module)
            todo.extend(_imports(path))
    return seen


@pytest.mark.parametrize("entry", ["api.app", "worker"])
def test_the_outbox_hooks_into_each_process_that_appends_events(entry: str) -> None:
    """The core does not call the outbox: ``notifications.outbox`` registers its append
    hook when it is imported. So each process that appends events (the API, the worker)
    must import it."""
    assert "notifications.outbox" in _reached(entry)


def test_the_outbox_registers_its_hook() -> None:
    from notifications.outbox import enqueue
    from runyard.store.events import _append_hooks

    assert _append_hooks.count(enqueue) == 1
