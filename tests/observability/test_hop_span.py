"""Hop spans behave as SDK spans for everything that reads them: processors, exporters, samplers, agents."""

from __future__ import annotations

import os

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags

from relaychain.observability import hop_span
from relaychain.observability.hop_span import HopTracer

PARENT = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))


class Recorder(SpanProcessor):
    def __init__(self) -> None:
        self.started: list[tuple[str, Context | None]] = []
        self.ended: list[ReadableSpan] = []

    def on_start(self, span: trace.Span, parent_context: Context | None = None) -> None:
        self.started.append((span.name, parent_context))  # type: ignore[attr-defined]

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


def provider(sampler: ParentBased | None = None) -> tuple[TracerProvider, InMemorySpanExporter]:
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "svc"}), sampler=sampler)
    exporter = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider, exporter


def test_a_hop_span_exports_like_an_sdk_span() -> None:
    tracer_provider, exporter = provider()
    span = HopTracer(tracer_provider).start("memory memory.load", PARENT, SpanKind.CONSUMER, {"a": "b"})
    span.set_attribute("relaychain.memory.turns", 3)
    span.set_attribute("relaychain.tags", ["x", "y"])
    span.add_event("first token", {"n": 1})
    span.set_status(StatusCode.ERROR, "timeout")
    span.end()
    span.set_attribute("late", True)

    (exported,) = exporter.get_finished_spans()
    assert exported.name == "memory memory.load"
    assert exported.parent == PARENT
    assert exported.context.trace_id == PARENT.trace_id and exported.context.trace_flags.sampled
    assert exported.kind is SpanKind.CONSUMER
    assert dict(exported.attributes) == {"a": "b", "relaychain.memory.turns": 3, "relaychain.tags": ("x", "y")}
    assert [(e.name, dict(e.attributes)) for e in exported.events] == [("first token", {"n": 1})]
    assert exported.status.status_code is StatusCode.ERROR and exported.status.description == "timeout"
    assert exported.resource.attributes["service.name"] == "svc"
    assert exported.instrumentation_scope.name == "relaychain"
    assert exported.start_time <= exported.end_time
    assert not span.is_recording()


def test_a_user_processor_sees_start_and_end_with_the_parent_context() -> None:
    tracer_provider, _ = provider()
    recorder = Recorder()
    tracer_provider.add_span_processor(recorder)
    span = HopTracer(tracer_provider).start("router route", PARENT, SpanKind.CONSUMER, {})
    span.end()
    ((name, parent_context),) = recorder.started
    assert name == "router route"
    assert trace.get_current_span(parent_context).get_span_context() == PARENT
    assert recorder.ended == [span]


def test_sampling_follows_the_parent_and_the_ratio_at_the_root() -> None:
    tracer_provider, exporter = provider(ParentBased(TraceIdRatioBased(0.0)))
    tracer = HopTracer(tracer_provider)
    unsampled_parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    for parent in (None, unsampled_parent):
        span = tracer.start("a a", parent, SpanKind.CONSUMER, {})
        assert not span.is_recording() and not span.get_span_context().trace_flags.sampled
        span.end()
    tracer.start("a a", PARENT, SpanKind.CONSUMER, {}).end()
    assert [s.name for s in exporter.get_finished_spans()] == ["a a"]


def test_an_exception_inside_the_span_is_recorded() -> None:
    tracer_provider, exporter = provider()
    try:
        with HopTracer(tracer_provider).start("generator generate", None, SpanKind.CONSUMER, {}):
            raise TimeoutError("model took too long")
    except TimeoutError:
        pass
    (exported,) = exporter.get_finished_spans()
    assert exported.parent is None
    assert exported.status.status_code is StatusCode.ERROR
    (event,) = exported.events
    assert event.name == "exception" and event.attributes["exception.type"] == "TimeoutError"


def test_a_disabled_sdk_records_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    tracer = HopTracer(TracerProvider())
    span = tracer.start("a a", PARENT, SpanKind.CONSUMER, {})
    assert not span.is_recording()
    span.end()
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    for carried in (headers, {}):
        assert not tracer.start_child("a a", carried, SpanKind.CONSUMER, {}).is_recording()


@pytest.mark.parametrize("root", [TraceIdRatioBased(0.3), ALWAYS_ON, ALWAYS_OFF])
def test_a_root_from_headers_is_sampled_as_the_sampler_decides(root: Sampler) -> None:
    sampler = ParentBased(root)
    tracer_provider, exporter = provider(sampler)
    tracer = HopTracer(tracer_provider)
    spans = [tracer.start_child("a a", {}, SpanKind.CONSUMER, {"k": "v"}) for _ in range(400)]
    for span in spans:
        context = span.get_span_context()
        decision = sampler.should_sample(None, context.trace_id, "a a").decision
        assert span.is_recording() is decision.is_sampled() is context.trace_flags.sampled
        assert context.is_valid and context.trace_flags & TraceFlags.RANDOM_TRACE_ID
        span.end()
    recorded = [s for s in spans if s.get_span_context().trace_flags.sampled]
    assert len(exporter.get_finished_spans()) == len(recorded)
    assert all(dict(s.attributes) == {"k": "v"} and s.parent is None for s in exporter.get_finished_spans())
    assert len({s.get_span_context().trace_id for s in spans}) == len(spans)
    if isinstance(root, TraceIdRatioBased):
        assert 40 < len(recorded) < 200


def test_an_unsampled_hop_passes_its_trace_on_unsampled() -> None:
    tracer_provider, exporter = provider(ParentBased(TraceIdRatioBased(1.0)))
    unsampled_parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    span = HopTracer(tracer_provider).start("a a", unsampled_parent, SpanKind.CONSUMER, {})
    headers: dict[str, str] = {}
    span.inject(headers)  # type: ignore[attr-defined]  # a hop's span writes its own headers
    context = span.get_span_context()
    assert not span.is_recording() and context.is_valid and context.trace_id == 0xABC
    assert headers == {"traceparent": f"00-{0xABC:032x}-{context.span_id:016x}-00"}
    span.end()
    assert exporter.get_finished_spans() == ()


def test_a_processor_added_later_sees_the_spans_that_start_after_it() -> None:
    tracer_provider, exporter = provider()
    tracer = HopTracer(tracer_provider)
    tracer.start("a a", PARENT, SpanKind.CONSUMER, {}).end()
    recorder = Recorder()
    tracer_provider.add_span_processor(recorder)
    tracer.start("b b", PARENT, SpanKind.CONSUMER, {}).end()
    assert [s.name for s in exporter.get_finished_spans()] == ["a a", "b b"]
    assert [name for name, _ in recorder.started] == ["b b"] and [s.name for s in recorder.ended] == ["b b"]


def test_span_ids_are_random_hex_and_a_forked_child_draws_its_own() -> None:
    tracer = HopTracer(provider()[0])
    ids = [tracer.start("a a", PARENT, SpanKind.CONSUMER, {}).get_span_context().span_id for _ in range(2000)]
    assert len(set(ids)) == len(ids) and 0 not in ids
    assert hop_span._SPAN_IDS  # ids left over from the last draw
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child reports what it would hand out next
        os.write(writer, tracer.start("a a", PARENT, SpanKind.CONSUMER, {}).span_hex.encode())  # type: ignore[attr-defined]
        os._exit(0)
    os.close(writer)
    child_id = os.read(reader, 64).decode()
    os.waitpid(child, 0)
    assert child_id != hop_span._SPAN_IDS[-1]  # what the parent hands out next
    assert len(child_id) == 16 and int(child_id, 16) != 0


def test_a_span_started_from_headers_has_the_parent_they_carry() -> None:
    from relaychain.observability import traceparent

    tracer_provider, exporter = provider()
    recorder = Recorder()
    tracer_provider.add_span_processor(recorder)
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "k=v"}
    span = HopTracer(tracer_provider).start_child("router route", headers, SpanKind.CONSUMER, {})
    span.end()

    parent = traceparent.parse(headers)
    (exported,) = exporter.get_finished_spans()
    assert exported.parent == parent and parent is not None and parent.is_remote
    assert exported.parent.trace_state == parent.trace_state and exported.parent.trace_flags.sampled
    assert exported.context.trace_id == parent.trace_id and exported.context.trace_state.get("k") == "v"
    ((_, parent_context),) = recorder.started
    assert trace.get_current_span(parent_context).get_span_context() == parent
    unsampled = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}
    assert not HopTracer(tracer_provider).start_child("a a", unsampled, SpanKind.CONSUMER, {}).is_recording()
    root = HopTracer(tracer_provider).start_child("a a", {}, SpanKind.CONSUMER, {})
    assert root.is_recording() and root.parent is None  # type: ignore[attr-defined]
