"""The W3C `traceparent` / `tracestate` headers, read and written directly.

Every hop extracts one header and injects one; OpenTelemetry's propagator
does the same through a regex, a getter/setter protocol and a Context per
call, which is most of the cost of carrying a trace across a message. The
format is fixed by https://www.w3.org/TR/trace-context/#traceparent-header.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from opentelemetry.trace import SpanContext, TraceFlags, TraceState

__all__ = ["TRACEPARENT", "TRACESTATE", "format_traceparent", "inject", "parse"]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_HEX = frozenset("0123456789abcdef")
_MAX_LENGTH = 512
_MAX_STATE_LENGTH = 512


def parse(headers: Mapping[str, str]) -> SpanContext | None:
    """The remote parent carried by `headers`; None when absent or malformed (the hop then starts a trace)."""
    value = headers.get(TRACEPARENT)
    if value is None:
        return None
    value = value.strip(" \t")
    if not 55 <= len(value) <= _MAX_LENGTH or (len(value) > 55 and value[55] != "-"):
        return None
    version, trace_hex, span_hex, flags_hex = value[:2], value[3:35], value[36:52], value[53:55]
    if (
        value[2] != "-"
        or value[35] != "-"
        or value[52] != "-"
        or version == "ff"
        or (version == "00" and len(value) != 55)
        or not _HEX.issuperset(version + trace_hex + span_hex + flags_hex)
    ):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    state = headers.get(TRACESTATE)
    return SpanContext(
        trace_id,
        span_id,
        is_remote=True,
        trace_flags=TraceFlags(int(flags_hex, 16)),
        trace_state=TraceState.from_header([state]) if state and len(state) <= _MAX_STATE_LENGTH else None,
    )


def format_traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def inject(context: SpanContext, headers: MutableMapping[str, str]) -> None:
    """Write `context` into `headers` when it is valid; an invalid one (no span) leaves them as they are."""
    if not context.is_valid:
        return
    headers[TRACEPARENT] = format_traceparent(context)
    if context.trace_state:
        headers[TRACESTATE] = context.trace_state.to_header()
