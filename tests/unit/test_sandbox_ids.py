"""Sandbox ids map back to their run, whatever generation (a rebuilt sandbox)."""

from __future__ import annotations

from runyard.sandbox.ids import generation_of, run_id_for, sandbox_id_for


def test_ids_round_trip() -> None:
    run_id = "run_abc123"
    assert sandbox_id_for(run_id) == "sbx_abc123"
    assert sandbox_id_for(run_id, 2) == "sbx_abc123-2"
    for gen in (0, 1, 2, 10):
        sid = sandbox_id_for(run_id, gen)
        assert run_id_for(sid) == run_id
        assert generation_of(sid) == gen


def test_foreign_ids_belong_to_no_run() -> None:
    for sid in ("", "sbx_", "sbx_-1", "tmp", "e2b-xyz"):
        assert run_id_for(sid) is None
