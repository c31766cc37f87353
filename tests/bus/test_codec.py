"""What the runtime takes instead of decoding: recently encoded events, each handed out once, equal to a decode."""

from __future__ import annotations

from relaychain.bus.codec import EventCodec, RecentEvents
from relaychain.schemas import PUBLIC_EVENTS
from relaychain.schemas.events import ChatMessage, Job, Request


def job() -> Job:
    request = Request(business="shop", input="hello", vars={"name": "Ada"}, conversation_id="c1")
    return Job(
        request=request,
        model="gpt-4o",
        prompt=(ChatMessage(role="user", content="hello"),),
        outputs={"generate": "{}"},
        slip=("format",),
        business="shop",
    )


def test_a_recent_event_is_taken_once_under_the_id_it_was_encoded_with() -> None:
    codec = EventCodec(PUBLIC_EVENTS)
    recent = RecentEvents(codec)
    event = job()
    value = codec.encode(event, event_id="derived")
    recent.keep(value, event, "derived")
    taken = recent.take(value)
    assert taken == codec.decode(value)
    assert taken is not None and taken.id == "derived"
    assert recent.take(value) is None, "a second reader decodes its own copy"


def test_an_equal_copy_of_the_bytes_finds_the_event() -> None:
    """Kafka hands a consumer new bytes objects; equal bytes from this process still skip the decode."""
    codec = EventCodec(PUBLIC_EVENTS)
    recent = RecentEvents(codec)
    event = job()
    value = codec.encode(event)
    recent.keep(value, event, None)
    assert recent.take(bytes(bytearray(value))) is event


def test_an_event_of_a_subclass_is_decoded_not_taken() -> None:
    """Decoding would give the codec's class, not the subclass: the reader must see what decoding gives."""

    class Annotated(Job):
        pass

    codec = EventCodec(PUBLIC_EVENTS)
    recent = RecentEvents(codec)
    event = Annotated(**{name: getattr(job(), name) for name in Job.model_fields})
    value = codec.encode(event)
    recent.keep(value, event, None)
    assert recent.take(value) is None


def test_only_the_newest_events_are_kept() -> None:
    codec = EventCodec(PUBLIC_EVENTS)
    recent = RecentEvents(codec, capacity=2)
    events = [job() for _ in range(3)]
    values = [codec.encode(e) for e in events]
    for value, event in zip(values, events, strict=True):
        recent.keep(value, event, None)
    assert [recent.take(v) for v in values] == [None, events[1], events[2]]


def test_the_kept_bytes_stay_within_max_bytes() -> None:
    codec = EventCodec(PUBLIC_EVENTS)
    events = [job() for _ in range(3)]
    values = [codec.encode(e) for e in events]
    recent = RecentEvents(codec, max_bytes=len(values[1]) + len(values[2]))
    for value, event in zip(values, events, strict=True):
        recent.keep(value, event, None)
    assert [recent.take(v) for v in values] == [None, events[1], events[2]]
