"""The approval object of the HTTP contract (``apr_…``), defined once: the API renders
it, ``runyard.client`` parses it (see ``runyard.run_model``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from runyard.run_model import ApiModel, Pagination, Rfc3339


class Approval(ApiModel):
    """A tool call that waited (or waits) for a person's decision."""

    id: str = Field(examples=["apr_5c1n8q2w0e7r4t6y3u9i"])
    object: str = Field(default="approval", examples=["approval"])
    run_id: str
    turn: int
    tool_call_id: str
    tool: str = Field(examples=["bash"])
    input: Any = Field(description="The call's input (as edited, if it was).")
    original_input: Any = Field(default=None, description="The model's input, when edited.")
    rule: dict[str, Any] | None = Field(description="The rule that asked; null: the default.")
    status: str = Field(
        examples=["pending"],
        description="pending, approved, edited, denied, expired or cancelled",
    )
    decision: str | None = Field(description="approve, edit or deny")
    message: str | None
    scope: str | None = Field(description="once or run")
    decided_by: str | None = Field(description='The API key id, or "token".')
    created_at: Rfc3339
    expires_at: Rfc3339
    decided_at: Rfc3339 | None


class ApprovalList(ApiModel):
    data: list[Approval]


class ApprovalPage(ApiModel):
    data: list[Approval]
    pagination: Pagination
