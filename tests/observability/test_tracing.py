"""Spans per handled event, parented through the traceparent header, exported as JSON lines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from relaychain.bus import MemoryBus
from relaychain.bus.codec import EventCodec
from relaychain.bus.runtime import AgentRuntime, Routes
from relaychain.observability import JsonLinesSpanExporter, TracingMiddleware, read_spans
from relaychain.schemas import Event


class Hop(Event):
    type: Literal["hop"] = "hop"


class Forward:
    def __init__(self, name: str) -> None:
        self.name = name

    async def handle(self, event: Event) -> Sequence[Event]:
        return [event.advance(self.name)] if len(event.slip) > 1 else []


def provider(path: Path, service: str) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource

    tracer_provider = TracerProvider(resource=Resource.create({"service.name": service}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    return tracer_provider


async def test_a_request_is_one_trace_across_runtimes(tmp_path: Path) -> None:
    """Two runtimes with their own tracer providers stand in for two processes sharing only headers."""
    traces = tmp_path / "traces.jsonl"
    bus = MemoryBus()
    await bus.start()
    routes = Routes(type_topics={}, step_topic=lambda step: f"topic.{step}", deadletter="dlq")
    codec = EventCodec([Hop])
    first = AgentRuntime(
        bus, codec, routes, middlewares=[TracingMiddleware(provider(traces, "one"))], raise_errors=True
    )
    second = AgentRuntime(
        bus, codec, routes, middlewares=[TracingMiddleware(provider(traces, "two"))], raise_errors=True
    )
    await first.add(Forward("a"), ["topic.a"], group="a")
    await second.add(Forward("b"), ["topic.b"], group="b")
    await first.add(Forward("c"), ["topic.c"], group="c")
    hop = Hop(slip=("a", "b", "c"))
    client_provider = provider(traces, "client")
    with client_provider.get_tracer("test").start_as_current_span("publish"):
        await first.emit(hop)
    await bus.run_until_idle()

    spans = read_spans(traces)
    assert {s["name"] for s in spans} == {"publish", "a a", "b b", "c c"}
    assert len({s["trace_id"] for s in spans}) == 1
    by_name = {s["name"]: s for s in spans}
    assert by_name["a a"]["parent_span_id"] == by_name["publish"]["span_id"]
    assert by_name["b b"]["parent_span_id"] == by_name["a a"]["span_id"]
    assert by_name["c c"]["parent_span_id"] == by_name["b b"]["span_id"]
    assert by_name["b b"]["service"] == "two"
    assert by_name["a a"]["attributes"]["relaychain.event.id"] == hop.id
    assert "relaychain.outcome" not in by_name["a a"]["attributes"]
    await bus.stop()


async def test_publish_adds_the_trace_to_a_dict_of_headers_and_copies_any_other_mapping(tmp_path: Path) -> None:
    from types import MappingProxyType

    from opentelemetry.trace import SpanKind

    from relaychain.bus.base import Message
    from relaychain.observability import current_span
    from relaychain.observability.hop_span import HopTracer

    tracer_provider = provider(tmp_path / "t.jsonl", "svc")
    middleware = TracingMiddleware(tracer_provider)
    published: list[Message] = []

    async def send(message: Message) -> None:
        published.append(message)

    span = HopTracer(tracer_provider).start("a a", None, SpanKind.CONSUMER, {})
    token = current_span.enter(span)
    built = Message("t", b"{}", "k", {"event-type": "hop"})
    frozen = Message("t", b"{}", "k", MappingProxyType({"event-type": "hop"}))
    await middleware.publish(send, built)
    await middleware.publish(send, frozen)
    current_span.leave(token)

    ids = span.get_span_context()
    expected = f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{ids.trace_flags:02x}"
    assert published[0] is built and built.headers["traceparent"] == expected
    assert published[1] is not frozen and dict(published[1].headers) == {"event-type": "hop", "traceparent": expected}
    assert dict(frozen.headers) == {"event-type": "hop"}
