"""The span of one handled event: an SDK `ReadableSpan` without the SDK span's per-span machinery.

The SDK's `Span` builds a lock, a `BoundedAttributes` (a lock of its own and
a cleaning pass over every value), two `BoundedList`s and, when it ends, a
second `ReadableSpan` copy, on every span. A hop's span is started, written
and ended on the event loop's thread, then handed to the span processors
as it is: `HopSpan` is that span, both the API's `Span` (what agents see
through `trace.get_current_span()`) and the SDK's `ReadableSpan` (what
processors and exporters read). The provider's sampler, id generator,
resource and span processors are the ones used, so exporters, user
callbacks and sampling behave as with any SDK span; only plain attribute
values (str, bool, int, float) skip the cleaning pass. A hop whose trace is
not sampled gets an `UnsampledHopSpan`, which records nothing and passes
the trace on. Both keep their ids as the hex of the `traceparent` header
(`HopIds`). A `HopSpan` also keeps, from its start, the record its JSON
line is made of; the record's fields are defined here (`span_record`, for
any span) and `jsonl` writes them.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from time import time_ns
from types import SimpleNamespace, TracebackType
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes, _clean_attribute_value
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, SynchronousMultiSpanProcessor, Tracer
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationInfo, InstrumentationScope
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util import types

from relaychain.observability.traceparent import FLAGS, FLAGS_HEX, TRACEPARENT, RemoteParent, fields, inject

__all__ = ["HopIds", "HopSpan", "HopTracer", "UnsampledHopSpan"]

log = logging.getLogger(__name__)

_PLAIN = frozenset({str, bool, int, float})
_REMOTE_DEFAULTS = "remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,"
_NO_OP_STARTS = frozenset({SpanProcessor.on_start, SimpleSpanProcessor.on_start, BatchSpanProcessor.on_start})
_NO_OP_ENDINGS = frozenset({SpanProcessor._on_ending, SimpleSpanProcessor._on_ending, BatchSpanProcessor._on_ending})
_FOLLOWED_FLAGS = TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID
"""The bits of a remote parent's flags a child keeps."""
_ROOT = Context()
"""The context a hop without a `traceparent` is sampled in: no parent, whatever the current context holds."""
_UNREAD = object()
_NO_PROCESSOR_LIST = SimpleNamespace(_span_processors=None)
"""Stands for an active span processor without a list of processors (not the SDK's multi-processor)."""
_SAMPLED = int(TraceFlags.SAMPLED)
_ALL_IDS = 1 << 64
_ROOT_FLAGS = (FLAGS[TraceFlags.RANDOM_TRACE_ID], FLAGS[TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID])
"""A root's flags by whether it is sampled; its trace id is random."""
_CHILD_FLAGS = tuple(FLAGS[flags & _FOLLOWED_FLAGS] for flags in range(256))
"""A child's flags by its remote parent's, made once."""
_SPAN_IDS: list[str] = []
"""Span ids as hex, cut from one `os.urandom` per 512: `getrandbits(64)` and formatting it cost twice as much."""
_ZERO_SPAN_ID = "0" * 16
os.register_at_fork(after_in_child=_SPAN_IDS.clear)  # a forked child never hands out its parent's ids

# The JSON-lines record of a span (`jsonl` writes it): kept here, where a hop span builds its own from the start.
_UNSET = Status(StatusCode.UNSET)
"""A hop span's status until something sets one (its record's default)."""
# Keyed by identity: an enum member hashes through a Python-level `__hash__`, a call per lookup.
_KIND_NAMES = {id(kind): kind.name for kind in SpanKind}
_STATUS_NAMES = {id(code): code.name for code in StatusCode}


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """The JSON-lines record of an ended span: a hop span's is the one it kept (see `HopSpan.__init__`; not a
    copy), any other span's is made here with the same fields."""
    if type(span) is HopSpan:
        return span._record
    # Only a span built by hand lacks a context; an ended SDK span always has one.
    context = span.get_span_context() or INVALID_SPAN_CONTEXT
    parent = span.parent
    status = span.status
    resource = span.resource
    events = span.events
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
        "kind": _KIND_NAMES[id(span.kind)],
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": _STATUS_NAMES[id(status.status_code)],
        "status_description": status.description,
        "attributes": dict(span.attributes or {}),
        "events": _events(events),
        "service": resource.attributes.get("service.name") if resource else None,
    }


def _events(events: Sequence[Event]) -> list[dict[str, Any]]:
    return [{"name": e.name, "attributes": dict(e.attributes or {})} for e in events]


def _more_span_ids() -> str:
    """One span id; the next 511 (fewer an invalid all-zero one) are kept for the spans after it."""
    digits = os.urandom(8 * 512).hex()
    _SPAN_IDS.extend([digits[at : at + 16] for at in range(0, len(digits), 16)])
    if _ZERO_SPAN_ID in _SPAN_IDS:  # one draw in 2^64: not a valid id
        _SPAN_IDS.remove(_ZERO_SPAN_ID)
    return _SPAN_IDS.pop()


def _span_context(trace_hex: str, span_hex: str, flags: TraceFlags, state: str | None) -> SpanContext:
    return SpanContext(
        int(trace_hex, 16),
        int(span_hex, 16),
        is_remote=False,
        trace_flags=flags,
        trace_state=TraceState.from_header([state]) if state else None,
    )


def _clean(value: types.AnyValue) -> types.AnyValue:
    return value if type(value) in _PLAIN else _clean_attribute_value(value, None)


def _span_id() -> str:
    return _SPAN_IDS.pop() if _SPAN_IDS else _more_span_ids()


def _root_bound(sampler: Sampler) -> int | None:
    """The bound under which a root's trace id's low 64 bits are sampled, when the sampler is `ParentBased`
    with a root sampler whose rule that is (ratio-based, always on, always off); else None (it is asked)."""
    root = getattr(sampler, "_root", None) if type(sampler) is ParentBased else None
    if type(root) is TraceIdRatioBased:
        return root.bound
    if root is ALWAYS_ON or root is ALWAYS_OFF:
        return _ALL_IDS if root is ALWAYS_ON else 0
    return None


class HopTracer:
    """Starts hop spans with an SDK provider's sampler, ids, resource and span processors."""

    def __init__(self, provider: trace_api.TracerProvider, name: str = "relaychain") -> None:
        tracer = provider.get_tracer(name)
        # OTEL_SDK_DISABLED=true makes the provider hand out no-op tracers: hops then get no spans either.
        self._disabled = not isinstance(tracer, Tracer)
        if not isinstance(tracer, Tracer):
            return
        self._sampler = tracer.sampler
        self._ids = tracer.id_generator
        self.resource = tracer.resource
        self.service_name = self.resource.attributes.get("service.name")
        """Read once: a provider's resource never changes."""
        self._processor = tracer.span_processor
        self.instrumentation_info = tracer.instrumentation_info
        self.instrumentation_scope = InstrumentationScope(name)
        self._random_ids = self._ids.is_trace_id_random()
        self._default_ids = type(self._ids) is RandomIdGenerator
        self._follows_remote_parent = isinstance(self._sampler, ParentBased) and _REMOTE_DEFAULTS in (
            self._sampler.get_description()
        )
        self._root_bound = _root_bound(self._sampler)
        # The provider's processors, as the calls that do something: (re)read when a processor is added.
        self._watched: Any = self._processor if hasattr(self._processor, "_span_processors") else _NO_PROCESSOR_LIST
        """What holds the processors' list, read on every span (an attribute read, not a `getattr` call)."""
        self._seen_processors: object = _UNREAD
        self._starts: tuple[Callable[..., None], ...] = ()
        self._endings: tuple[Callable[[HopSpan], None], ...] = ()
        self._ends: tuple[Callable[[HopSpan], None], ...] = ()

    def start(
        self,
        name: str,
        parent: RemoteParent | SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, types.AnyValue],
    ) -> trace_api.Span:
        """A recording `HopSpan` (or a non-recording span when not sampled), child of the remote `parent`."""
        if isinstance(parent, SpanContext):
            parent = RemoteParent.of(parent)
        if self._disabled:
            return NonRecordingSpan(parent.span_context if parent is not None else INVALID_SPAN_CONTEXT)
        # The SDK's default generator draws random bits: here the same from `os.urandom`; another generator is asked.
        if self._default_ids:
            span_hex = _SPAN_IDS.pop() if _SPAN_IDS else _more_span_ids()
        else:
            span_hex = f"{self._ids.generate_span_id():016x}"
        if parent is not None and self._follows_remote_parent:
            # What ParentBased decides for a remote parent with its default delegates, without asking it:
            # sampled and random-trace-id as the parent says.
            flags = _CHILD_FLAGS[parent.flags]
            if not flags & _SAMPLED:
                return UnsampledHopSpan(parent.trace_hex, span_hex, flags, parent.state)
            span = HopSpan(
                self, name, parent.trace_hex, span_hex, flags, parent.state, parent.span_hex, parent, kind, attributes
            )
            parent_context = None
        else:
            parent_context = self._parent_context(parent)
            trace_id = int(parent.trace_hex, 16) if parent is not None else self._ids.generate_trace_id()
            result = self._sampler.should_sample(parent_context, trace_id, name, kind, attributes, ())
            trace_hex = parent.trace_hex if parent is not None else f"{trace_id:032x}"
            state = result.trace_state.to_header() if result.trace_state else None
            random_trace_id = parent.flags & TraceFlags.RANDOM_TRACE_ID if parent is not None else self._random_ids
            flags = FLAGS[
                (TraceFlags.SAMPLED if result.decision.is_sampled() else 0)
                | (TraceFlags.RANDOM_TRACE_ID if random_trace_id else 0)
            ]
            if not result.decision.is_recording():
                return UnsampledHopSpan(trace_hex, span_hex, flags, state)
            parent_hex = parent.span_hex if parent is not None else None
            span = HopSpan(
                self, name, trace_hex, span_hex, flags, state, parent_hex, parent, kind, dict(result.attributes)
            )
        self._refresh_processors()
        for on_start in self._starts:
            on_start(span, parent_context=parent_context or self._parent_context(parent))
        return span

    def start_child(
        self, name: str, headers: Mapping[str, str], kind: SpanKind, attributes: dict[str, types.AnyValue]
    ) -> trace_api.Span:
        """`start` with the parent that `headers` carry (`traceparent.read`). A hop's usual cases, a parent
        followed or a root sampled by ratio, with the default ids, are done here without asking the sampler
        and without the objects `start` makes for its other cases."""
        parent = fields(headers)
        if self._disabled or not self._default_ids:
            return self.start(name, RemoteParent(*parent) if parent is not None else None, kind, attributes)
        parent_hex: str | None
        parent_flags: TraceFlags | None
        state: str | None
        if parent is not None and self._follows_remote_parent:
            trace_hex, parent_hex, parent_flags, state = parent
            span_hex = _SPAN_IDS.pop() if _SPAN_IDS else _more_span_ids()
            flags = _CHILD_FLAGS[parent_flags]
        elif parent is None and self._root_bound is not None:
            # What ParentBased asks of a ratio-based (or always on/off) root sampler: the low 64 bits of the
            # trace id under its bound. Two random span ids make the (random, never zero) trace id.
            trace_hex = _span_id() + _span_id()
            span_hex = _span_id()
            flags = _ROOT_FLAGS[int(trace_hex[16:], 16) < self._root_bound]
            parent_hex = parent_flags = state = None
        else:
            return self.start(name, RemoteParent(*parent) if parent is not None else None, kind, attributes)
        if not flags & _SAMPLED:
            return UnsampledHopSpan(trace_hex, span_hex, flags, state)
        # The parent's own object is made only if something asks for it (`HopSpan._remote_parent`).
        span = HopSpan(self, name, trace_hex, span_hex, flags, state, parent_hex, parent_flags, kind, attributes)
        self._refresh_processors()
        for on_start in self._starts:
            on_start(span, parent_context=self._parent_context(span._remote_parent))
        return span

    @staticmethod
    def _parent_context(parent: RemoteParent | None) -> Context:
        return _ROOT if parent is None else trace_api.set_span_in_context(NonRecordingSpan(parent.span_context), _ROOT)

    def _refresh_processors(self) -> None:
        """The processor calls a span needs, read again when a processor was added: the SDK's multi-processor
        is looked through (its loops, and hooks that do nothing, cost a call each per span)."""
        processors = self._watched._span_processors
        if processors is self._seen_processors:
            return
        self._seen_processors = processors
        # The SDK types its processors' hooks for its own Span; they read only the ReadableSpan interface HopSpan has.
        if processors is None or type(self._processor) is not SynchronousMultiSpanProcessor:
            processor = self._processor
            self._starts = (processor.on_start,)
            self._endings = (processor._on_ending,)  # type: ignore[assignment]
            self._ends = (processor.on_end,)
            return
        self._starts = tuple(p.on_start for p in processors if type(p).on_start not in _NO_OP_STARTS)
        self._endings = tuple(p._on_ending for p in processors if type(p)._on_ending not in _NO_OP_ENDINGS)
        self._ends = tuple(p.on_end for p in processors)


class HopIds:
    """A hop's ids as its `traceparent` header carries them (hex); the `SpanContext` is built only when asked.

    A hop needs the hex far more often (the header it publishes, the exported
    span) than a `SpanContext` (a sampler, an exporter, an agent asking).
    """

    __slots__ = ("_flags", "_own_context", "_state", "span_hex", "trace_hex")

    def __init__(self, trace_hex: str, span_hex: str, flags: TraceFlags, state: str | None) -> None:
        self.trace_hex = trace_hex
        self.span_hex = span_hex
        self._flags = flags
        self._state = state
        self._own_context: SpanContext | None = None

    @property  # the API span's and ReadableSpan's attribute, made lazy
    def _context(self) -> SpanContext:
        if self._own_context is None:
            self._own_context = _span_context(self.trace_hex, self.span_hex, self._flags, self._state)
        return self._own_context

    def get_span_context(self) -> SpanContext:
        return self._context

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """This span as the parent of what the hop publishes, in `headers`."""
        if self._state is None:
            headers[TRACEPARENT] = f"00-{self.trace_hex}-{self.span_hex}-{FLAGS_HEX[self._flags]}"
        else:
            inject(self._context, headers)


class UnsampledHopSpan(HopIds, NonRecordingSpan):  # type: ignore[override]  # `_context` made lazy, as in HopSpan
    """The non-recording span of a hop that is not sampled: its ids still go on to the next hop."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"UnsampledHopSpan({self._context!r})"


class HopSpan(HopIds, trace_api.Span, ReadableSpan):  # type: ignore[misc]  # `_context` made lazy
    """A recording span written from one thread (the event loop's) until `end()` hands it to the processors."""

    __slots__ = (
        "_attributes",
        "_end_time",
        "_kind",
        "_parent_or_flags",
        "_record",
        "_tracer",
    )
    _end_time: int | None
    _events: tuple[Event, ...] = ()
    _links: tuple[Link, ...] = ()
    _status = _UNSET

    def __init__(
        self,
        tracer: HopTracer,
        name: str,
        trace_hex: str,
        span_hex: str,
        flags: TraceFlags,
        state: str | None,
        parent_hex: str | None,
        parent: RemoteParent | TraceFlags | None,
        kind: SpanKind,
        attributes: dict[str, types.AnyValue],
    ) -> None:
        """`parent` is the remote parent, or only its flags when the parent's ids are the span's trace id,
        `parent_hex` and its state `state` (`_remote_parent` makes the object when asked)."""
        # ReadableSpan's fields, set directly (its keyword-argument __init__ was a third of a hop span's start);
        # `_context` and `_parent` are built from the hex ids only when something asks for them, and what most
        # spans keep at its default (events, links, status) or share with their tracer is read from the class.
        self.trace_hex = trace_hex
        self.span_hex = span_hex
        self._flags = flags
        self._state = state
        self._own_context = None
        self._parent_or_flags = parent
        self._kind = kind
        self._end_time = None
        self._attributes = attributes
        self._tracer = tracer
        # Its JSON-lines record, kept from the start and written as the span changes (name, status, events,
        # end): ending a hop reads nothing back to make it. Name, start and parent are only kept here;
        # `attributes` is the span's own dict (not written once the span has ended: the record needs no copy).
        self._record: dict[str, Any] = {
            "name": name,
            "trace_id": trace_hex,
            "span_id": span_hex,
            "parent_span_id": parent_hex,
            "kind": _KIND_NAMES[id(kind)],
            "start_ns": time_ns(),
            "end_ns": None,
            "status": "UNSET",
            "status_description": None,
            "attributes": attributes,
            "events": [],
            "service": tracer.service_name,
        }

    @property
    def _name(self) -> str:  # type: ignore[override]
        return self._record["name"]  # type: ignore[no-any-return]

    @property
    def _start_time(self) -> int:  # type: ignore[override]
        return self._record["start_ns"]  # type: ignore[no-any-return]

    @property
    def _remote_parent(self) -> RemoteParent | None:
        parent = self._parent_or_flags
        if parent is None or isinstance(parent, RemoteParent):
            return parent
        parent_hex = self._record["parent_span_id"]
        self._parent_or_flags = remote = RemoteParent(self.trace_hex, parent_hex, parent, self._state)
        return remote

    @property
    def _parent(self) -> SpanContext | None:  # type: ignore[override]
        remote = self._remote_parent
        return remote.span_context if remote is not None else None

    @property
    def _resource(self) -> Resource:  # type: ignore[override]
        return self._tracer.resource

    @property
    def _instrumentation_info(self) -> InstrumentationInfo | None:  # type: ignore[override]
        return self._tracer.instrumentation_info

    @property
    def _instrumentation_scope(self) -> InstrumentationScope:  # type: ignore[override]
        return self._tracer.instrumentation_scope

    def __repr__(self) -> str:
        return f'HopSpan(name="{self._name}", context={self._context})'

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end_time is None:
            self._attributes[key] = _clean(value)  # type: ignore[index]  # a dict, see __init__

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(self, name: str, attributes: types.Attributes = None, timestamp: int | None = None) -> None:
        if self._end_time is None:
            cleaned = BoundedAttributes(attributes=attributes, immutable=True)
            self._events = (*self._events, Event(name, cleaned, timestamp))
            self._record["events"] = _events(self._events)

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._end_time is None and context.is_valid:
            self._links = (*self._links, Link(context, BoundedAttributes(attributes=attributes)))

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._record["name"] = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK: OK is final, UNSET changes nothing."""
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        if status.status_code is not StatusCode.UNSET:
            self._status = status
            record = self._record
            record["status"] = _STATUS_NAMES[id(status.status_code)]
            record["status_description"] = status.description

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        kind = type(exception)
        qualname = (
            kind.__qualname__ if kind.__module__ in ("builtins", "") else f"{kind.__module__}.{kind.__qualname__}"
        )
        details: dict[str, types.AnyValue] = {
            "exception.type": qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        self.add_event("exception", {**details, **(attributes or {})}, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            log.warning("Calling end() on an ended span.")
            return
        self._end_time = self._record["end_ns"] = end_time if end_time is not None else time_ns()
        # Handed to the processors as the SDK's own spans are.
        tracer = self._tracer
        tracer._refresh_processors()
        for on_ending in tracer._endings:
            on_ending(self)
        for on_end in tracer._ends:
            on_end(self)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        if exc_val is not None and self.is_recording():
            self.record_exception(exc_val, escaped=True)
            self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        super().__exit__(exc_type, exc_val, exc_tb)
