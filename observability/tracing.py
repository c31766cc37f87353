"""Tracing as bus middleware: one span per handled event, the W3C trace context in message headers."""

from __future__ import annotations

from collections.abc import Awaitable
from contextvars import Token

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AnyValue

from relaychain.bus.base import Message
from relaychain.bus.middleware import ConsumeNext, HandleContext, PublishNext, consume_with_hooks
from relaychain.observability import current_span, traceparent
from relaychain.observability.current_span import SPAN_KEY
from relaychain.observability.hop_span import HopIds, HopTracer

_FAILED = frozenset({"error", "dead_lettered"})
_CONSUMER = SpanKind.CONSUMER
"""Read once: an enum member read from its class costs a call (70 ns) on every hop."""


class TracingMiddleware:
    """Spans are named `<agent> <step>`; a consumed message's `traceparent` header is the parent.

    Span creation and trace propagation are the largest per-hop cost of the
    embedded pipeline (see bench/bus.py), so the hop's span is a lean
    `HopSpan`, the headers are read and written directly (see
    `traceparent`) and so is the current span (see `current_span`).
    Attributes are kept few on purpose: `relaychain.outcome` is only recorded
    when it is not `ok`.
    """

    def __init__(self, tracer_provider: trace.TracerProvider) -> None:
        self._tracer = HopTracer(tracer_provider)

    async def consume(self, call_next: ConsumeNext, ctx: HandleContext) -> None:
        await consume_with_hooks(self, call_next, ctx)

    def enter(self, ctx: HandleContext) -> tuple[Span, Token[Context]]:
        """The hop's span, started and made current (`ConsumeHooks`: the runtime calls this and `exit` directly)."""
        message = ctx.message
        event = ctx.event
        if event is not None:
            attributes: dict[str, AnyValue] = {
                "messaging.destination.name": message.topic,
                "relaychain.event.id": event.id,
                "relaychain.request.id": event.request_id,
                "relaychain.business": event.business,
            }
            if event.tenant is not None:
                attributes["relaychain.tenant"] = event.tenant
            name = f"{ctx.agent} {event.current_step or event.type}"
        else:
            attributes = {"messaging.destination.name": message.topic}
            name = f"{ctx.agent} {message.topic}"
        span = self._tracer.start_child(name, message.headers, _CONSUMER, attributes)
        return span, current_span.enter(span)

    def exit(self, token: tuple[Span, Token[Context]], ctx: HandleContext) -> None:
        span, current = token
        current_span.leave(current)
        outcome = ctx.outcome
        if outcome != "ok":
            span.set_attribute("relaychain.outcome", outcome)
            span.set_attribute("relaychain.attempts", ctx.attempts)
            if outcome in _FAILED:
                span.set_status(Status(StatusCode.ERROR, ctx.error_code))
        if ctx.error_code is not None:
            span.set_attribute("error.type", ctx.error_code)
        span.end()

    def publish(self, call_next: PublishNext, message: Message) -> Awaitable[None]:
        # Not a coroutine of its own: the next publish is returned to be awaited (one frame less per hop).
        span = current_span.current_context().get(SPAN_KEY)
        headers = message.headers
        if not isinstance(headers, dict):
            # Written in place when the publisher built a dict (see `Middleware.publish`): a copy of the headers
            # and of the frozen message cost more than the rest of this method.
            headers = dict(headers)
            message = Message(message.topic, message.value, message.key, headers)
        if isinstance(span, HopIds):
            span.inject(headers)
        elif isinstance(span, Span):
            traceparent.inject(span.get_span_context(), headers)  # nothing for an invalid span
        return call_next(message)
