"""The W3C trace context headers, parsed and written as OpenTelemetry's own propagator does."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from relaychain.observability import traceparent

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def propagator_view(headers: dict[str, str]) -> SpanContext | None:
    context = trace.get_current_span(TraceContextTextMapPropagator().extract(headers)).get_span_context()
    return context if context.is_valid else None


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": VALID},
        {"traceparent": VALID, "tracestate": "vendor=abc,other=1"},
        {"traceparent": f" {VALID}\t"},
        {"traceparent": VALID.replace("-01", "-00")},
        {"traceparent": "01" + VALID[2:] + "-future-field"},
        {"traceparent": VALID + "-extra"},
        {"traceparent": "ff" + VALID[2:]},
        {"traceparent": VALID.replace("4bf92f3577b34da6a3ce929d0e0e4736", "0" * 32)},
        {"traceparent": VALID.replace("00f067aa0ba902b7", "0" * 16)},
        {"traceparent": VALID.upper()},
        {"traceparent": VALID[:-1]},
        {"traceparent": VALID.replace("-", "_")},
        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e47+6-00f067aa0ba902b7-01"},
        {},
    ],
)
def test_parse_agrees_with_the_propagator(headers: dict[str, str]) -> None:
    assert traceparent.parse(headers) == propagator_view(headers)
    parsed = traceparent.parse(headers)
    if parsed is not None:
        assert parsed.is_remote
        assert parsed.trace_state == propagator_view(headers).trace_state  # type: ignore[union-attr]


def test_inject_writes_what_the_propagator_writes() -> None:
    context = SpanContext(
        0x4BF92F3577B34DA6A3CE929D0E0E4736,
        0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "abc")]),
    )
    ours: dict[str, str] = {}
    traceparent.inject(context, ours)
    theirs: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(theirs, trace.set_span_in_context(trace.NonRecordingSpan(context)))
    assert ours == theirs == {"traceparent": VALID, "tracestate": "vendor=abc"}


def test_inject_leaves_headers_alone_without_a_span() -> None:
    headers = {"content-type": "application/json"}
    traceparent.inject(trace.INVALID_SPAN_CONTEXT, headers)
    assert headers == {"content-type": "application/json"}
