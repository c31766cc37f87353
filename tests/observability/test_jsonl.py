"""JSON-lines spans: one record per span, the same fields for hop spans and SDK spans, read back as written."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags

from relaychain.observability import JsonLinesSpanProcessor, read_spans
from relaychain.observability.hop_span import HopTracer
from relaychain.observability.jsonl import span_record

PARENT = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def provider(processor: JsonLinesSpanProcessor) -> TracerProvider:
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    tracer_provider.add_span_processor(processor)
    return tracer_provider


def test_hop_spans_and_sdk_spans_are_written_alike(tmp_path: Path) -> None:
    processor = JsonLinesSpanProcessor(tmp_path / "t.jsonl", flush_interval_s=60)
    tracer_provider = provider(processor)
    hop = HopTracer(tracer_provider).start("router route", PARENT, SpanKind.CONSUMER, {"relaychain.request.id": "r1"})
    hop.set_attribute("relaychain.tags", ["a", "b"])
    hop.add_event("retry", {"attempt": 2})
    hop.set_status(StatusCode.ERROR, "timeout")
    hop.end()
    with tracer_provider.get_tracer("test").start_as_current_span("client request") as sdk_span:
        sdk_span.set_attribute("relaychain.request.id", "r1")
    processor.force_flush()

    hop_line, sdk_line = read_spans(tmp_path / "t.jsonl")
    assert hop_line == {
        "name": "router route",
        "trace_id": f"{0xABC:032x}",
        "span_id": f"{hop.get_span_context().span_id:016x}",
        "parent_span_id": f"{0xDEF:016x}",
        "kind": "CONSUMER",
        "start_ns": hop_line["start_ns"],
        "end_ns": hop_line["end_ns"],
        "status": "ERROR",
        "status_description": "timeout",
        "attributes": {"relaychain.request.id": "r1", "relaychain.tags": ["a", "b"]},
        "events": [{"name": "retry", "attributes": {"attempt": 2}}],
        "service": "svc",
    }
    assert 0 < hop_line["start_ns"] <= hop_line["end_ns"]
    assert hop_line == span_record(hop) | {"attributes": hop_line["attributes"]}  # a tuple is a JSON list
    assert sdk_line.keys() == hop_line.keys()
    assert (sdk_line["name"], sdk_line["parent_span_id"], sdk_line["status"]) == ("client request", None, "UNSET")
    assert sdk_line["service"] == "svc"
    tracer_provider.shutdown()


def test_spans_beyond_the_pending_limit_are_dropped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    processor = JsonLinesSpanProcessor(tmp_path / "t.jsonl", flush_interval_s=60, max_pending=2)
    tracer = HopTracer(provider(processor))
    for name in ("a a", "b b", "c c"):
        tracer.start(name, PARENT, SpanKind.CONSUMER, {}).end()
    with caplog.at_level(logging.WARNING, logger="relaychain.observability.jsonl"):
        processor.force_flush()
    assert [s["name"] for s in read_spans(tmp_path / "t.jsonl")] == ["a a", "b b"]
    assert "1 spans were dropped" in caplog.text
    tracer.start("d d", PARENT, SpanKind.CONSUMER, {}).end()
    processor.shutdown()
    assert [s["name"] for s in read_spans(tmp_path / "t.jsonl")] == ["a a", "b b", "d d"]


def test_a_hop_spans_line_has_what_it_became_before_it_ended_and_nothing_after(tmp_path: Path) -> None:
    processor = JsonLinesSpanProcessor(tmp_path / "t.jsonl", flush_interval_s=60)
    tracer_provider = provider(processor)
    hop = HopTracer(tracer_provider).start("router route", PARENT, SpanKind.CONSUMER, {"a": 1})
    hop.update_name("router reroute")
    hop.set_status(StatusCode.OK)
    hop.end(end_time=hop.start_time + 5)
    hop.update_name("too late")
    hop.set_attribute("b", 2)
    hop.set_status(StatusCode.ERROR, "too late")
    processor.force_flush()

    (line,) = read_spans(tmp_path / "t.jsonl")
    assert (line["name"], line["status"], line["status_description"]) == ("router reroute", "OK", None)
    assert (line["end_ns"] - line["start_ns"], line["attributes"], line["events"]) == (5, {"a": 1}, [])
    assert span_record(hop) == line
    tracer_provider.shutdown()
