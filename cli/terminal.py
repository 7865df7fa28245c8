"""What the command line prints of a run is agent-made or client-made text: before it
reaches a terminal, every character a terminal would act on instead of showing is made
visible. One function for text (``clean``) and one for JSON (``json_text``), used by every
command that prints run data (``follow``, ``run --follow``, ``runs list|get``, ``logs``,
the answer prompt, error messages).

A terminal acts on C0 controls (ESC starts the sequences that set the clipboard with
OSC 52, retitle the window, move the cursor to overwrite a line already shown), DEL, C1
controls (U+0080 to U+009F: U+009B is a CSI on many terminals), a carriage return alone
(it rewinds the line, so a forged line can cover a real one), and the bidirectional
overrides and isolates (they reorder what is shown, e.g. a command that reads
differently from what runs). Newlines and tabs are kept.
"""

from __future__ import annotations

import json
import re

# C0 but tab and newline; DEL; C1; the bidi marks, embeddings, overrides and isolates.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
# What json.dumps(ensure_ascii=False) leaves raw: DEL, C1, bidi (it escapes C0 itself).
_UNSAFE_IN_JSON = re.compile(f"[\x7f-\x9f{_BIDI}]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str) -> str:
    """``text`` with every control character but newline and tab shown as its escape
    (``\\x1b``, ``\\x9b``, ``\\u202e``): it prints as itself, never acts. A Windows line
    end (CR LF) becomes a newline; any other CR is shown as ``\\x0d``."""
    return _UNSAFE.sub(_visible, text.replace("\r\n", "\n"))


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_text(data: object, *, indent: int | None = None) -> str:
    """``data`` as JSON that is safe on a terminal and still the same JSON: the characters
    ``json.dumps`` leaves raw become ``\\uXXXX`` escapes (they occur only in strings)."""
    return _UNSAFE_IN_JSON.sub(_json_escape, json.dumps(data, indent=indent, ensure_ascii=False))
