"""Tracing as bus middleware: one span per handled event, the W3C trace context in message headers."""

from __future__ import annotations

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from relaychain.bus.base import Message
from relaychain.bus.middleware import ConsumeNext, HandleContext, PublishNext

_FAILED = frozenset({"error", "dead_lettered"})


class TracingMiddleware:
    """Spans are named `<agent> <step>`; a consumed message's `traceparent` header is the parent.

    Attributes are kept few on purpose: span creation is the largest per-hop
    cost of the embedded pipeline (see bench/bus.py); `relaychain.outcome`
    is only recorded when it is not `ok`.
    """

    def __init__(self, tracer_provider: TracerProvider) -> None:
        self._tracer = tracer_provider.get_tracer("relaychain")
        self._propagator = TraceContextTextMapPropagator()

    async def consume(self, call_next: ConsumeNext, ctx: HandleContext) -> None:
        parent = self._propagator.extract(ctx.message.headers)
        event = ctx.event
        step = ctx.step or (event.type if event is not None else ctx.message.topic)
        attributes: dict[str, str] = {"messaging.destination.name": ctx.message.topic}
        if event is not None:
            attributes["relaychain.event.id"] = event.id
            attributes["relaychain.request.id"] = event.request_id
            attributes["relaychain.business"] = event.business
        span = self._tracer.start_span(
            f"{ctx.agent} {step}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
        token = context.attach(trace.set_span_in_context(span))
        try:
            await call_next()
        finally:
            context.detach(token)
            if ctx.outcome != "ok":
                span.set_attribute("relaychain.outcome", ctx.outcome)
                span.set_attribute("relaychain.attempts", ctx.attempts)
            if ctx.outcome in _FAILED:
                span.set_status(Status(StatusCode.ERROR, ctx.error_code))
            if ctx.error_code is not None:
                span.set_attribute("error.type", ctx.error_code)
            span.end()

    async def publish(self, call_next: PublishNext, message: Message) -> None:
        headers = dict(message.headers)
        self._propagator.inject(headers)
        await call_next(Message(message.topic, message.value, message.key, headers))
