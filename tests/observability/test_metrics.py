"""Metrics middleware: handled events, latency, in-flight, and the business counters the dashboard reads."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from relaychain.bus import MemoryBus
from relaychain.bus.codec import EventCodec
from relaychain.bus.errors import AgentError
from relaychain.bus.runtime import AgentRuntime, Routes
from relaychain.observability import MetricsMiddleware
from relaychain.schemas import PUBLIC_EVENTS, Event, Request, StepUsage, Usage


class Priced:
    name = "router"

    async def handle(self, event: Event) -> Sequence[Event]:
        assert isinstance(event, Request)
        if event.input == "bad":
            raise AgentError("unknown_business", "no such business")
        usage = StepUsage(
            step="generate",
            model="gpt-4o",
            input_tokens=10,
            output_tokens=4,
            input_cost=Decimal("0.25"),
            output_cost=Decimal("0.5"),
        )
        return [event.reply(Usage, usage=usage)]


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict, float]]]:
    found: dict[str, list[tuple[dict, float]]] = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = [
                    (dict(p.attributes), getattr(p, "value", getattr(p, "count", 0))) for p in metric.data.data_points
                ]
    return found


async def test_counters_follow_what_the_agents_emit() -> None:
    reader = InMemoryMetricReader()
    bus = MemoryBus()
    await bus.start()
    routes = Routes(type_topics={"usage": "usage", "error": "answers"}, step_topic=str, deadletter="dlq")
    runtime = AgentRuntime(
        bus, EventCodec(PUBLIC_EVENTS), routes, middlewares=[MetricsMiddleware(MeterProvider(metric_readers=[reader]))]
    )
    await runtime.add(Priced(), ["requests"], group="router")
    codec = runtime.codec
    await bus.publish("requests", codec.encode(Request(business="ops_push", input="fine")))
    await bus.publish("requests", codec.encode(Request(business="ops_push", input="bad")))
    await bus.run_until_idle()

    found = points(reader)
    handled = {(a["outcome"]): v for a, v in found["relaychain.events.handled"]}
    assert handled == {"ok": 1, "error": 1}
    assert found["relaychain.requests"] == [({"business": "ops_push"}, 2)]
    assert found["relaychain.errors"] == [({"business": "ops_push", "code": "unknown_business"}, 1)]
    tokens = {a["direction"]: v for a, v in found["relaychain.tokens"]}
    assert tokens == {"input": 10, "output": 4}
    assert found["relaychain.cost"] == [({"business": "ops_push", "model": "gpt-4o", "currency": "USD"}, 0.75)]
    assert sum(count for _, count in found["relaychain.handle.duration"]) == 2
    assert [v for _, v in found["relaychain.in_flight"]] == [0]
    await bus.stop()
