"""Metrics as bus middleware: events handled, failures, latency, in-flight, and the business counters.

Names follow the dashboard in deploy/grafana (OTel -> Prometheus adds the
`_total` / `_bucket` suffixes): relaychain.events.handled, .handle.duration,
.in_flight, .requests, .errors, .tokens, .cost.
"""

from __future__ import annotations

import time

from opentelemetry.metrics import MeterProvider

from relaychain.bus.base import Message
from relaychain.bus.middleware import ConsumeNext, HandleContext, PublishNext
from relaychain.schemas.envelope import Error
from relaychain.schemas.events import Request, Usage


class MetricsMiddleware:
    def __init__(self, meter_provider: MeterProvider) -> None:
        meter = meter_provider.get_meter("relaychain")
        self._handled = meter.create_counter("relaychain.events.handled", description="Events handled by agents")
        self._duration = meter.create_histogram("relaychain.handle.duration", unit="s", description="Handling time")
        self._in_flight = meter.create_up_down_counter("relaychain.in_flight", description="Events being handled")
        self._requests = meter.create_counter("relaychain.requests", description="Requests routed, per business")
        self._errors = meter.create_counter("relaychain.errors", description="Error answers, per business and code")
        self._tokens = meter.create_counter("relaychain.tokens", description="Tokens per business, model, direction")
        self._cost = meter.create_counter("relaychain.cost", description="Cost per business, model, currency")

    async def consume(self, call_next: ConsumeNext, ctx: HandleContext) -> None:
        agent = {"agent": ctx.agent}
        self._in_flight.add(1, agent)
        started = time.perf_counter()
        try:
            await call_next()
        finally:
            self._in_flight.add(-1, agent)
        step = ctx.step or (ctx.event.type if ctx.event is not None else ctx.message.topic)
        self._duration.record(time.perf_counter() - started, {"agent": ctx.agent, "step": step})
        self._handled.add(1, {"agent": ctx.agent, "step": step, "outcome": ctx.outcome})
        if isinstance(ctx.event, Request) and ctx.agent == "router":
            self._requests.add(1, {"business": ctx.event.business})
        for event in ctx.emitted:
            if isinstance(event, Error):
                self._errors.add(1, {"business": event.business, "code": event.code})
            elif isinstance(event, Usage):
                usage = event.usage
                labels = {"business": event.business, "model": usage.model}
                self._tokens.add(usage.input_tokens, labels | {"direction": "input"})
                self._tokens.add(usage.output_tokens, labels | {"direction": "output"})
                self._cost.add(float(usage.cost), labels | {"currency": usage.currency})

    async def publish(self, call_next: PublishNext, message: Message) -> None:
        await call_next(message)
