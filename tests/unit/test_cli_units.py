"""Pure logic of the command line: what reaches a terminal of a run's text and its id,
the settings ``runyard dev`` hands its children, and the default worker host name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from cli.dev import settings_env
from cli.follow import terminal
from cli.terminal import clean, json_text
from runyard.encryption import new_key_spec
from runyard.settings import Settings, default_host_name

# What the probe got through: an OSC 52 clipboard write, a line rewound and overwritten
# with a forged end of run, a CSI in its C1 form, a right-to-left override.
HOSTILE = (
    "ok\x1b]52;c;ZWNobyBwd25lZA==\x07 done\r● completed · 1 turns\n\x9b2J\u202etxt.exe\tend\r\nnext"
)


def test_clean_keeps_newlines_and_tabs_and_shows_every_other_control() -> None:
    out = clean(HOSTILE)
    assert out == (
        "ok\\x1b]52;c;ZWNobyBwd25lZA==\\x07 done\\x0d● completed · 1 turns\n"
        "\\x9b2J\\u202etxt.exe\tend\nnext"
    )
    for char in map(chr, [*range(0x20), *range(0x7F, 0xA0), 0x202E, 0x2066, 0x200F]):
        if char not in "\n\t":
            assert char not in clean(f"a{char}b"), repr(char)
    assert clean("plain ünïcode ✓ text\n\tindented") == "plain ünïcode ✓ text\n\tindented"


def test_json_text_is_the_same_json_without_raw_controls() -> None:
    data = {"text": HOSTILE, "n": [1, "\x7f"]}
    out = json_text(data, indent=2)
    assert json.loads(out) == data
    assert clean(out) == out  # nothing left that a terminal would act on


def _secrets() -> list[str]:
    """Every secret setting (``SecretStr``, optional or not): a new one is covered too."""
    return [
        name
        for name, info in Settings.model_fields.items()
        if info.annotation is SecretStr or SecretStr in getattr(info.annotation, "__args__", ())
    ]


def test_settings_env_hands_children_every_secret_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = _secrets()
    assert "secret_key" in names
    given = {name: SecretStr(f"{name}-value-{'x' * 40}") for name in names}
    given["payload_keys"] = SecretStr(f"{new_key_spec('k2')},{new_key_spec('k1')}")  # a format
    parent = Settings(data_dir=tmp_path, **given)  # type: ignore[arg-type]
    for env_name, value in settings_env(parent).items():
        monkeypatch.setenv(env_name, value)
    child = Settings()
    for name in names:
        got = getattr(child, name)
        assert got is not None and got.get_secret_value() == given[name].get_secret_value()
    assert child.model_dump() == parent.model_dump()


def test_default_host_name_is_unique_per_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNYARD_HOST_NAME", raising=False)
    a, b = Settings(data_dir=tmp_path / "a"), Settings(data_dir=tmp_path / "b")
    assert a.host_name != b.host_name
    assert a.host_name == default_host_name(tmp_path / "a")
    # The same directory, however it is named, is the same host.
    monkeypatch.chdir(tmp_path)
    assert Settings(data_dir=Path("a")).host_name == a.host_name
    # An operator's name is kept as it is.
    monkeypatch.setenv("RUNYARD_HOST_NAME", "builder-1")
    assert Settings(data_dir=tmp_path / "a").host_task_queue == "runyard@builder-1"


def test_follow_colours_only_what_its_markup_says() -> None:
    """A run id with "0x" in it (CI's flake: ``run_x2s5ycotnpa0xg44ygc7``) reaches a
    colour terminal whole; rich's highlighter split it with escape codes."""
    console = terminal(force_terminal=True, color_system="standard", width=200)
    run_id = "run_x2s5ycotnpa0xg44ygc7"
    with console.capture() as got:
        console.print(f"{run_id} goes on, 42 turns, /tmp/x, 'quoted' [bold]done[/bold]")
    out = got.get()
    assert f"{run_id} goes on, 42 turns, /tmp/x, 'quoted' " in out
    assert out.count("\x1b[") == 2  # the markup's bold and its reset, nothing else
