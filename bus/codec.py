"""Events to bytes and back, with orjson, and the reasons a message cannot be decoded."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from relaychain.schemas.envelope import SCHEMA_VERSION, DeadLetter, Error, Event
from relaychain.schemas.errors import ErrorCode

CONTENT_TYPE = "application/json"


class UndecodableMessage(Exception):
    """A message that is not an event this consumer understands; `reason` is a stable code."""

    def __init__(self, reason: str, detail: str, raw: dict[str, Any] | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.raw = raw


class EventCodec:
    """Knows the event types of one deployment; every message decodes to one of them or raises."""

    def __init__(self, event_types: Iterable[type[Event]]) -> None:
        known: list[type[Event]] = [*event_types, Error, DeadLetter]
        types = {t.model_fields["type"].default: t for t in known}
        self._types: dict[str, type[Event]] = types
        self._adapters: dict[str, TypeAdapter[Event]] = {name: TypeAdapter(t) for name, t in types.items()}

    @property
    def types(self) -> dict[str, type[Event]]:
        return dict(self._types)

    def encode(self, event: Event, *, event_id: str | None = None) -> bytes:
        """JSON bytes of `event`, optionally under another id (the runtime's derived ids, without a model copy)."""
        fields = event.__dict__ if event_id is None else {**event.__dict__, "id": event_id}
        return orjson.dumps(fields, default=_plain)

    def decode(self, value: bytes) -> Event:
        try:
            raw: Any = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise UndecodableMessage(ErrorCode.UNDECODABLE, f"not JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise UndecodableMessage(ErrorCode.UNDECODABLE, f"expected a JSON object, got {type(raw).__name__}")
        version = raw.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise UndecodableMessage(
                ErrorCode.SCHEMA_TOO_NEW, f"schema_version {version} > supported {SCHEMA_VERSION}", raw
            )
        event_type = raw.get("type")
        adapter = self._adapters.get(event_type) if isinstance(event_type, str) else None
        if adapter is None:
            raise UndecodableMessage(ErrorCode.UNKNOWN_TYPE, f"unknown event type {event_type!r}", raw)
        try:
            return adapter.validate_python(raw)
        except ValidationError as exc:
            raise UndecodableMessage(ErrorCode.INVALID_EVENT, str(exc), raw) from None


class RecentEvents:
    """The events this process encoded lately, by their bytes, each handed out once.

    The first agent in the same process that receives those bytes (the memory
    bus; Kafka with several agents in one process) takes the event instead of
    parsing and validating them again: that was most of the codec's cost on
    a hop. Another reader of the same message (a second group, a redelivery)
    decodes its own copy, so no two handlers ever hold one object. Only an
    event whose class is the one its bytes decode to is kept, so the reader
    gets what decoding would give. Bytes never read here (their consumer is
    in another process) leave after `capacity` newer ones, or sooner when
    the kept bytes pass `max_bytes`. On Kafka an event waits in the broker and
    in the next member's fetch while hundreds per agent are in flight: seven
    agents at 256 each kept ~2,000 unread, and 1,024 missed most hops.
    """

    def __init__(self, codec: EventCodec, capacity: int = 4096, max_bytes: int = 8 << 20) -> None:
        self._types = codec.types
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._bytes = 0
        self._events: OrderedDict[bytes, tuple[Event, str | None]] = OrderedDict()

    def keep(self, value: bytes, event: Event, event_id: str | None) -> None:
        if self._types.get(event.type) is not type(event) or value in self._events:
            return
        self._events[value] = (event, event_id)
        self._bytes += len(value)
        while len(self._events) > self._capacity or self._bytes > self._max_bytes:
            self._bytes -= len(self._events.popitem(last=False)[0])

    def take(self, value: bytes) -> Event | None:
        """The event `value` encodes, when it is a recent one not taken yet."""
        kept = self._events.pop(value, None)
        if kept is None:
            return None
        self._bytes -= len(value)
        event, event_id = kept
        # Encoded under a derived id without a copy (`EventCodec.encode`); the copy is made for the reader.
        return event if event_id is None else event.copy_with(id=event_id)


_CORRELATION_FIELDS = ("type", "request_id", "conversation_id", "business")


def lenient_fields(value: bytes) -> dict[str, str]:
    """The correlation fields of bytes orjson refused (invalid UTF-8, a lone surrogate), read leniently.

    Only clean strings come back, so the answer built from them encodes; the
    rest of the message stays unread (it goes whole to the dead-letter topic).
    """
    try:
        raw = json.loads(value.decode("utf-8", errors="replace"))
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {name: raw[name] for name in _CORRELATION_FIELDS if isinstance(raw.get(name), str) and _clean(raw[name])}


def _clean(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\ufffd" not in text


def _plain(value: Any) -> Any:
    """orjson calls this for what it cannot write itself: nested models and decimals.

    Walking `__dict__` skips pydantic's Python-side dump (twice as slow on
    the hot path); events are frozen field-only models, so nothing is lost.
    """
    if isinstance(value, BaseModel):
        return value.__dict__
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")
