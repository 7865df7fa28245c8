"""The one rule for JSON that crosses into Runyard: from a client, from a model, into the store.

JSON has no NaN or Infinity, yet Python's ``json`` reads and writes them by default. One
stored ``NaN`` made every later read of a run's events fail (a strict encoder refuses it)
and its JSONL invalid. So:

- a client's JSON is refused (400) when it holds a non-finite number, a NUL character (no
  store or sandbox can keep one) or nesting deeper than ``MAX_DEPTH``: :func:`json_problem`;
- a model's tool call with such an input becomes a tool error the agent sees;
- the store's JSON columns never write a non-finite number (:func:`store_dumps` writes
  ``null`` instead) and read one already stored as ``null`` (:func:`store_loads`).
"""

from __future__ import annotations

import json
import math
from typing import Any

import structlog

MAX_DEPTH = 32
log = structlog.get_logger("runyard.json")


def json_problem(value: Any, *, depth: int = 0) -> str | None:
    """What makes ``value`` (a parsed JSON value) unacceptable, or None.

    Walks the whole value without recursion (keys included): a NUL character, a
    non-finite number, or containers nested deeper than ``MAX_DEPTH`` levels counting from
    the document's top (``depth``: how deep ``value`` sits in its document).
    """
    stack: list[tuple[Any, int]] = [(value, depth)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "contains a NUL character (\\u0000), which is refused"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "contains a non-finite number (NaN or Infinity), which JSON does not have"
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_DEPTH:
                return f"nests deeper than {MAX_DEPTH} levels"
            if isinstance(item, dict):
                for k, v in item.items():
                    stack.append((k, depth + 1))
                    stack.append((v, depth + 1))
            else:
                stack.extend((v, depth + 1) for v in item)
    return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` without NaN/Infinity; raises ValueError (JSONDecodeError included)
    on those and on nesting too deep for the parser."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise ValueError("the JSON is nested too deeply") from exc


def storable(value: Any) -> Any:
    """``value`` as every column of the store can keep it: a non-finite number as None, a
    NUL character (in a string or a key) as U+FFFD (Postgres text refuses NUL)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def store_dumps(value: Any) -> str:
    """The store's JSON serializer: standard JSON always, a non-finite number as null."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        log.warning("store.non_finite_json", detail="a non-finite number was stored as null")
        return json.dumps(storable(value), allow_nan=False)


def _null_constant(_name: str) -> None:
    return None


# One decoder for every read: json.loads with an argument builds a new one per call,
# which was a sixth of the time of reading a run's row.
_DECODER = json.JSONDecoder(parse_constant=_null_constant)


def store_loads(text: str | bytes) -> Any:
    """The store's JSON deserializer: a NaN or Infinity written before this rule reads as
    null, so an old row cannot break a response."""
    if isinstance(text, bytes):  # as json.loads reads bytes
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    return _DECODER.decode(text)
