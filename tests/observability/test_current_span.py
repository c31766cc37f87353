"""A hop's span is current for the agent as `trace.get_current_span()` sees it, and only while the hop runs."""

from __future__ import annotations

import asyncio

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN, SpanKind
from opentelemetry.trace.propagation import _SPAN_KEY

from relaychain.observability import current_span
from relaychain.observability.hop_span import HopTracer


def test_the_entered_span_is_current_until_left_and_parents_spans_started_inside() -> None:
    tracer_provider = TracerProvider()
    exporter = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    hop = HopTracer(tracer_provider).start("generator generate", None, SpanKind.CONSUMER, {})
    outer = trace.get_current_span()

    token = current_span.enter(hop)
    assert trace.get_current_span() is hop and current_span.current_context().get(_SPAN_KEY) is hop
    with tracer_provider.get_tracer("test").start_as_current_span("llm call"):
        assert current_span.current_context().get(_SPAN_KEY) is not hop
    current_span.leave(token)

    assert trace.get_current_span() is outer is INVALID_SPAN and _SPAN_KEY not in current_span.current_context()
    hop.end()
    child, exported_hop = exporter.get_finished_spans()
    assert exported_hop is hop
    assert child.parent is not None and child.parent.span_id == hop.get_span_context().span_id


async def test_concurrent_hops_each_see_their_own_span() -> None:
    tracer = HopTracer(TracerProvider())
    seen: dict[str, trace.Span] = {}
    both_entered = asyncio.Barrier(2)

    async def hop(name: str) -> None:
        span = tracer.start(name, None, SpanKind.CONSUMER, {})
        token = current_span.enter(span)
        await both_entered.wait()
        seen[name] = trace.get_current_span()
        current_span.leave(token)
        assert seen[name] is span

    await asyncio.gather(hop("a a"), hop("b b"))
    assert seen["a a"] is not seen["b b"]
