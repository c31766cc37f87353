from __future__ import annotations

from pathlib import Path

import pytest

from relaychain.observability import ObservabilitySettings, read_spans, setup_telemetry
from tests.support.callbacks import Recorder


def test_user_span_processors_named_in_config_see_every_span(tmp_path: Path) -> None:
    settings = ObservabilitySettings(
        exporters=("jsonl",), jsonl_path=tmp_path / "t.jsonl", span_processors=("tests.support.callbacks:Recorder",)
    )
    telemetry = setup_telemetry(settings, jsonl_default=tmp_path / "unused.jsonl")
    with telemetry.tracer_provider.get_tracer("test").start_as_current_span("router route"):
        pass
    telemetry.shutdown()
    assert "router route" in Recorder.ended
    assert [s["name"] for s in read_spans(tmp_path / "t.jsonl")] == ["router route"]


@pytest.mark.parametrize("path", ["tests.support.callbacks", "tests.support.callbacks:Nope", "json:dumps"])
def test_a_bad_callback_path_fails_at_start_up(tmp_path: Path, path: str) -> None:
    settings = ObservabilitySettings(exporters=("none",), span_processors=(path,))
    with pytest.raises((ValueError, AttributeError, TypeError)):
        setup_telemetry(settings, jsonl_default=tmp_path / "t.jsonl")


def test_sample_ratio_zero_records_no_trace(tmp_path: Path) -> None:
    settings = ObservabilitySettings(exporters=("jsonl",), jsonl_path=tmp_path / "t.jsonl", sample_ratio=0.0)
    telemetry = setup_telemetry(settings, jsonl_default=tmp_path / "unused.jsonl")
    with telemetry.tracer_provider.get_tracer("test").start_as_current_span("router route") as span:
        assert not span.is_recording()
    telemetry.shutdown()
    assert read_spans(tmp_path / "t.jsonl") == []
