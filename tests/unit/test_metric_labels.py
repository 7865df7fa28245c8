"""Metric labels stay bounded whatever a client sends."""

from __future__ import annotations

from runyard import metrics


def test_model_labels_are_known_ids_or_families() -> None:
    assert metrics.model_label("scripted") == "scripted"
    assert metrics.model_label("sonnet") == "claude-sonnet-4-5"
    assert metrics.model_label("anthropic/claude-opus-4-5") == "claude-opus-4-5"
    assert metrics.model_label("claude-3-5-sonnet-20241022") == "claude-sonnet-*"
    assert metrics.model_label("claude-something-new-" + "x" * 50) == "other"


def test_tool_labels_are_the_agents_tools_or_other() -> None:
    assert metrics.tool_label("bash") == "bash"
    assert metrics.tool_label("read_file") == "read_file"
    assert metrics.tool_label("rm -rf /; " + "y" * 100) == "other"


def test_reaper_helper_counts_what_it_reaped() -> None:
    def reaped() -> float:
        return (
            metrics.WORKER.get_sample_value("runyard_sandboxes_reaped_total", {"provider": "local"})
            or 0
        )

    before = reaped()
    metrics.sandboxes_reaped(3)
    metrics.sandboxes_reaped(0)
    assert reaped() == before + 3


def test_lag_counts_only_events_appended_while_the_stream_was_open() -> None:
    def count() -> float:
        return metrics.API.get_sample_value("runyard_event_delivery_lag_seconds_count") or 0

    before = count()
    metrics.events_delivered([99.0, 100.0, 101.5], opened_at=100.0)
    assert count() == before + 2
