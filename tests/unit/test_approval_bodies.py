"""The bodies of ``/v1/runs/{id}/approvals`` (``api/approvals.py``): an edited input is
bounded, alone and across a batch (a larger one was a 502 from the workflow engine)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.approvals import MAX_BATCH_INPUT_BYTES, MAX_INPUT_BYTES, BatchBody, DecisionBody


def _edit(size: int, **extra: str) -> dict[str, object]:
    # {"path": "a", "content": "…"} is 28 bytes of JSON around the content.
    return {"decision": "edit", "input": {"path": "a", "content": "x" * (size - 28)}, **extra}


def test_an_edited_input_over_the_bound_is_refused() -> None:
    assert DecisionBody.model_validate(_edit(MAX_INPUT_BYTES)).input is not None
    with pytest.raises(ValidationError, match="at most"):
        DecisionBody.model_validate(_edit(MAX_INPUT_BYTES + 1))


def test_a_batch_of_edits_over_the_bound_is_refused() -> None:
    n = MAX_BATCH_INPUT_BYTES // MAX_INPUT_BYTES
    fits = [_edit(MAX_INPUT_BYTES, id=f"apr_{i}") for i in range(n)]
    assert len(BatchBody.model_validate({"decisions": fits}).decisions) == n
    over = [*fits, _edit(100, id="apr_last")]
    with pytest.raises(ValidationError, match="bytes of JSON"):
        BatchBody.model_validate({"decisions": over})
