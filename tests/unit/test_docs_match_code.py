"""The user docs say what the code does: every agent tool's input fields as its schema
declares them, one name for the reaper's schedule, and section references that exist."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import AliasChoices

from runyard.settings import Settings
from runyard.tools import REGISTRY
from workflows.reaper import reaper_schedule_id

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _schema_type(schema: dict[str, Any]) -> str:
    if schema["type"] == "array":
        return f"array of {schema['items']['type']}s"
    return str(schema["type"])


def _documented_tools() -> dict[str, dict[str, tuple[str, str, str]]]:
    """docs/api.md "Agent tools": tool → field → (type, required, default)."""
    section = _section((ROOT / "docs" / "api.md").read_text(), "## Agent tools")
    tools: dict[str, dict[str, tuple[str, str, str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or not cells[0].startswith("`"):
            continue
        tool, field, typ, required, default, _notes = cells
        fields = tools.setdefault(tool.strip("`"), {})
        assert field.strip("`") not in fields, (tool, field)
        fields[field.strip("`")] = (typ, required, default)
    return tools


def test_every_tool_input_field_is_documented_as_its_schema_says() -> None:
    documented = _documented_tools()
    assert set(documented) == set(REGISTRY)
    for tool in (t.schema() for t in REGISTRY.values()):
        schema = tool["input_schema"]
        fields = documented[tool["name"]]
        assert set(fields) == set(schema["properties"]), tool["name"]
        for name, prop in schema["properties"].items():
            typ, required, default = fields[name]
            assert typ == _schema_type(prop), (tool["name"], name)
            assert required == ("yes" if name in schema.get("required", []) else "no"), (
                tool["name"],
                name,
            )
            if required == "yes":
                assert not default, (tool["name"], name)
            if "default" in prop:
                assert default == f"`{prop['default']}`", (tool["name"], name)


def test_the_reaper_schedule_has_one_name_in_docs_and_code() -> None:
    queue, host = "<RUNYARD_TASK_QUEUE>", "<RUNYARD_HOST_NAME>"
    documented = reaper_schedule_id(Settings(task_queue=queue, host_name=host).host_task_queue)
    example = reaper_schedule_id(Settings(host_name="build-1").host_task_queue)
    found = [
        (doc.name, name)
        for doc in DOCS
        for name in re.findall(r"runyard-sandbox-reaper-[^\s`),]+", doc.read_text())
    ]
    assert found
    assert {name for _, name in found} <= {documented, example}, found


def test_section_references_point_at_sections_that_exist() -> None:
    """`"Errors" in docs/api.md`, `docs/REPOSITORIES.md, "Pull requests and issues"`,
    `see API.md "Rate limits"` (a file that is not in the repository fails),
    `(see "Network")`, `"Agent tools" below`."""
    texts = {doc.relative_to(ROOT).as_posix(): doc.read_text() for doc in DOCS}
    headings = {
        name: {h.strip() for h in re.findall(r"^#+ (.*)$", text, re.M)}
        for name, text in texts.items()
    }
    title = r'"([^"\n]{2,80})"'
    doc = r"`?((?:docs/)?[\w.]+\.md)`?"  # named with or without backticks
    checked = 0
    for name, text in texts.items():
        refs = [(m[1], m[0]) for m in re.findall(title + r"\s+in\s+" + doc, text)]
        refs += re.findall(doc + r",?\s+\(?" + title, text)
        refs += [(name, m) for m in re.findall(r"\(see\s+" + title + r"\)", text)]
        refs += [(name, m) for m in re.findall(title + r"\s+(?:below|above)\b", text)]
        for target, section in refs:
            target = target if target in texts else f"docs/{target}"
            assert section in headings.get(target, set()), (name, target, section)
            checked += 1
    assert checked


def _defaults(text: str) -> dict[str, str]:
    """A settings table's default column, by variable."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for env in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
                found.setdefault(env, cells[1])
    return found


def _renderings(value: object) -> list[str]:
    if isinstance(value, bool):
        return [f"`{str(value).lower()}`"]
    if isinstance(value, int | float):
        shown = [f"{value:g}"]
        if isinstance(value, int) and value % 2**20 == 0:
            shown.append(f"{value // 2**20} MiB")
        return shown
    if value == "":
        return ["—"]  # unset, as the table shows a None default
    return [f"`{value}`"]


def test_operations_lists_every_setting_with_its_default() -> None:
    """docs/operations.md "Settings" says it lists all of them (the E2B provider's own
    are in docs/sandbox.md, where it points), each with the default the code has."""
    operations = _section((ROOT / "docs" / "operations.md").read_text(), "## Settings")
    sandbox = _section((ROOT / "docs" / "sandbox.md").read_text(), "## The E2B provider")
    defaults = {**_defaults(sandbox), **_defaults(operations)}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        env = f"RUNYARD_{name.upper()}"
        if isinstance(alias, AliasChoices):
            env = str(alias.choices[0])
        where = sandbox if name.startswith("e2b_") and name != "e2b_api_key" else operations
        assert f"`{env}`" in where, env
        if field.default_factory is None and field.default is not None:
            shown = defaults[env]
            assert any(shown.startswith(r) for r in _renderings(field.default)), (env, shown)
