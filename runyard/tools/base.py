"""What a tool is: a pydantic input model (the JSON schema the model sees is derived from
it), where it runs, how it runs, and a policy hook.

Where a tool runs:

- ``sandbox``: against the ``Sandbox`` protocol only, so every provider gets the same tools;
- ``output``: also against the run's context (``ToolContext``): a push, a pull request, an
  issue, an artifact — what it records is returned in the ``ToolOutput``;
- ``control``: in the workflow itself (``ask_user``); it has no runner.

A tool's failure is a result the model sees (``is_error``), never an activity failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from runyard.db.tables import Artifact
from runyard.sandbox.base import Sandbox

if TYPE_CHECKING:
    from runyard.tools.context import ToolContext

Where = Literal["sandbox", "output", "control"]


class ToolArgs(BaseModel):
    """A tool's input. Strict: a string field takes a string, never a number; a field the
    schema does not name is ignored. A field that must not be null but may be left out is
    typed ``X | SkipJsonSchema[None]`` with a ``not_null`` validator."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def unlisted(default: Any) -> Any:
    """A field's default that the schema does not state (the docs say what it means)."""
    return Field(default=default, json_schema_extra=_drop_default)


def not_null(value: object) -> object:
    """A ``mode="before"`` field validator: the field may be left out, not set to null."""
    if value is None:
        raise ValueError("must not be null")
    return value


class _ModelSchema(GenerateJsonSchema):
    """The schema as the model sees it: no titles, no ``default: null``."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def sort(self, value: JsonSchemaValue, parent_key: str | None = None) -> JsonSchemaValue:
        return value  # keys in the order they are declared

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        out = super().model_schema(schema)
        out.pop("title", None)
        props = {
            name: {k: v for k, v in prop.items() if not (k == "default" and v is None)}
            for name, prop in out.get("properties", {}).items()
        }
        shaped: dict[str, Any] = {"type": "object", "properties": props}
        if out.get("required"):
            shaped["required"] = out["required"]
        return shaped


@dataclass(frozen=True)
class ToolOutput:
    text: str
    is_error: bool = False
    outputs: tuple[dict[str, Any], ...] = ()  # branch, pr, issue … recorded with the result
    artifacts: tuple[Artifact, ...] = ()


@dataclass(frozen=True)
class Call:
    """What a runner gets besides its input: the tool timeout and, for output tools (and a
    ``bash`` command that may push), the run's context."""

    timeout: float
    ctx: ToolContext | None = None


A = TypeVar("A", bound=ToolArgs)
Runner = Callable[[Sandbox, A, Call], Awaitable[ToolOutput]]


def _never(_: Any) -> bool:
    return False


@dataclass(frozen=True)
class Tool(Generic[A]):
    name: str
    description: str
    args: type[A]
    where: Where
    run: Runner[A] | None = None  # None: a control tool, handled by the workflow
    approval: Callable[[A], bool] = _never

    def requires_approval(self, inp: A) -> bool:
        """The policy hook: whether this call waits for a person's approval whatever
        the run's approval policy says (``runyard.approvals.policy.decide`` asks it for
        every gated call of a run with a policy; no tool asks yet)."""
        return self.approval(inp)

    def schema(self) -> dict[str, Any]:
        """The tool as the model's tool list declares it."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.args.model_json_schema(schema_generator=_ModelSchema),
        }

    def parse(self, raw: Mapping[str, Any]) -> A:
        """The call's input, or a ``ValueError`` saying which field is wrong."""
        try:
            return self.args.model_validate(raw)
        except ValidationError as exc:
            raise ValueError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    seen: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else "input"
        seen.setdefault(field, err["msg"])
    return "; ".join(f"'{field}': {msg}" for field, msg in seen.items())
