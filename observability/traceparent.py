"""The W3C `traceparent` / `tracestate` headers, read and written directly.

Every hop extracts one header and injects one; OpenTelemetry's propagator
does the same through a regex, a getter/setter protocol and a Context per
call, which is most of the cost of carrying a trace across a message. A hop
needs the ids as hex (its own header, the exported span) far more often than
as a `SpanContext` (a sampler or an agent asking), so `read` keeps them as
the header wrote them and builds the `SpanContext` only when asked. The
format is fixed by https://www.w3.org/TR/trace-context/#traceparent-header.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping

from opentelemetry.trace import SpanContext, TraceFlags, TraceState

__all__ = [
    "FLAGS",
    "FLAGS_HEX",
    "TRACEPARENT",
    "TRACESTATE",
    "RemoteParent",
    "fields",
    "format_traceparent",
    "inject",
    "parse",
    "read",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_HEX = frozenset("0123456789abcdef")
_MAX_LENGTH = 512
_MAX_STATE_LENGTH = 512
_VERSION_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
"""What every hop carries; matched in one go, the general rules in `_fields` only run for other versions."""
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
FLAGS = tuple(TraceFlags(flags) for flags in range(256))
"""`TraceFlags` by value, made once."""
FLAGS_HEX = tuple(f"{flags:02x}" for flags in range(256))
"""The flags field of a header by value."""
_FLAGS_BY_HEX = {text: FLAGS[flags] for flags, text in enumerate(FLAGS_HEX)}
"""`TraceFlags` by the (lower-case, validated) flags field."""


class RemoteParent:
    """The parent a message's headers name: ids in hex as received, the `SpanContext` on demand."""

    __slots__ = ("_context", "flags", "span_hex", "state", "trace_hex")

    def __init__(self, trace_hex: str, span_hex: str, flags: TraceFlags, state: str | None) -> None:
        self.trace_hex = trace_hex
        self.span_hex = span_hex
        self.flags = flags
        self.state = state
        """The `tracestate` header as received (passed on unchanged, as the W3C rules allow)."""
        self._context: SpanContext | None = None

    @classmethod
    def of(cls, context: SpanContext) -> RemoteParent:
        parent = cls(
            f"{context.trace_id:032x}",
            f"{context.span_id:016x}",
            context.trace_flags,
            context.trace_state.to_header() if context.trace_state else None,
        )
        parent._context = context
        return parent

    @property
    def span_context(self) -> SpanContext:
        if self._context is None:
            self._context = SpanContext(
                int(self.trace_hex, 16),
                int(self.span_hex, 16),
                is_remote=True,
                trace_flags=self.flags,
                trace_state=TraceState.from_header([self.state]) if self.state else None,
            )
        return self._context


def read(headers: Mapping[str, str]) -> RemoteParent | None:
    """The remote parent carried by `headers`; None when absent or malformed (the hop then starts a trace)."""
    parent = fields(headers)
    return RemoteParent(*parent) if parent is not None else None


def fields(headers: Mapping[str, str]) -> tuple[str, str, TraceFlags, str | None] | None:
    """`read` as the parent's trace id, span id, flags and trace state, without an object to hold them."""
    value = headers.get(TRACEPARENT)
    if value is None:
        return None
    common = _VERSION_00.fullmatch(value)
    if common is None:  # surrounding blanks (allowed), another version, or malformed
        value = value.strip(" \t")
        common = _VERSION_00.fullmatch(value)
    ids = common.groups() if common is not None else _fields(value)
    if ids is None:
        return None
    trace_hex, span_hex, flags_hex = ids
    if trace_hex == _ZERO_TRACE or span_hex == _ZERO_SPAN:
        return None
    state = headers.get(TRACESTATE)
    if state is not None and (not state.strip() or len(state) > _MAX_STATE_LENGTH):
        state = None
    return trace_hex, span_hex, _FLAGS_BY_HEX[flags_hex], state


def parse(headers: Mapping[str, str]) -> SpanContext | None:
    """`read`, as the `SpanContext` OpenTelemetry's propagator would extract."""
    parent = read(headers)
    return parent.span_context if parent is not None else None


def _fields(value: str) -> tuple[str, str, str] | None:
    """Trace id, span id and flags of a header in another version (later versions may append fields)."""
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
    return trace_hex, span_hex, flags_hex


def format_traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def inject(context: SpanContext, headers: MutableMapping[str, str]) -> None:
    """Write `context` into `headers` when it is valid; an invalid one (no span) leaves them as they are."""
    if not context.is_valid:
        return
    headers[TRACEPARENT] = format_traceparent(context)
    if context.trace_state:
        headers[TRACESTATE] = context.trace_state.to_header()
