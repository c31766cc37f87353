"""Bus and runtime contract: every backend must behave like this."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Literal

import pytest

from relaychain.bus import Bus, Message, TopicSpec
from relaychain.bus.codec import EventCodec
from relaychain.bus.errors import AgentError, RetryableError
from relaychain.bus.runtime import AgentRuntime, RetryPolicy, Routes
from relaychain.schemas import DeadLetter, Error, Event
from tests.bus.conftest import BusFactory
from tests.support.waiting import eventually


class Ping(Event):
    type: Literal["ping"] = "ping"
    n: int = 0


class Pong(Event):
    type: Literal["pong"] = "pong"
    n: int = 0


def runtime_on(bus: Bus, names: Callable[[str], str], **kwargs: object) -> AgentRuntime:
    routes = Routes(
        type_topics={"pong": names("out"), "error": names("answers")},
        step_topic=lambda step: names(step),
        deadletter=names("dlq"),
    )
    retry = RetryPolicy(max_attempts=4, base_delay_s=0.001, max_delay_s=0.01)
    return AgentRuntime(bus, EventCodec([Ping, Pong]), routes, retry=retry, **kwargs)  # type: ignore[arg-type]


class Collector:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)


async def test_per_key_order_is_kept(bus_factory: BusFactory, names: Callable[[str], str]) -> None:
    bus = await bus_factory()
    topic = names("orders")
    await bus.create_topics([TopicSpec(topic, partitions=4)])
    seen: dict[str, list[int]] = defaultdict(list)

    async def handler(message: Message) -> None:
        await asyncio.sleep(0.001 * (int(message.value) % 3))
        seen[message.key or ""].append(int(message.value))

    await bus.subscribe([topic], group=names("g"), handler=handler, max_in_flight=16)
    for i in range(200):
        await bus.publish(topic, str(i).encode(), key=f"k{i % 5}")
    await eventually(lambda: sum(map(len, seen.values())) >= 200)
    for key, values in seen.items():
        assert values == sorted(values), key
    assert len(seen) == 5


async def test_every_group_sees_every_message(bus_factory: BusFactory, names: Callable[[str], str]) -> None:
    bus = await bus_factory()
    topic = names("fanout")
    first, second = Collector(), Collector()
    await bus.subscribe([topic], group=names("a"), handler=first)
    await bus.subscribe([topic], group=names("b"), handler=second)
    for i in range(50):
        await bus.publish(topic, f"{i}".encode(), key=str(i))
    await eventually(lambda: len(first.messages) == 50 and len(second.messages) == 50)
    assert sorted(m.value for m in first.messages) == sorted(m.value for m in second.messages)


async def test_group_members_split_partitions_and_take_over_unacked(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    topic, group = names("split"), names("g")
    bus_a, bus_b = await bus_factory(), await bus_factory()
    await bus_a.create_topics([TopicSpec(topic, partitions=4)])
    stuck = asyncio.Event()
    a_got: list[bytes] = []
    b_got = Collector()

    async def a_handler(message: Message) -> None:
        a_got.append(message.value)
        await stuck.wait()

    member_a = await bus_a.subscribe([topic], group=group, handler=a_handler)
    member_b = await bus_b.subscribe([topic], group=group, handler=b_got)
    await eventually(lambda: len(member_a.assignment) == 2 and len(member_b.assignment) == 2, timeout=30)
    assert not member_a.assignment & member_b.assignment

    for i in range(40):
        await bus_a.publish(topic, f"m{i}".encode(), key=f"key-{i}")
    await eventually(lambda: len(b_got.messages) > 0 and len(a_got) > 0)
    unacked_on_a = set(a_got)

    await member_a.stop(drain_timeout=0.1)
    await eventually(lambda: {m.value for m in b_got.messages} >= unacked_on_a, timeout=30)
    assert {m.value for m in b_got.messages} | set() == {f"m{i}".encode() for i in range(40)}


async def test_retryable_failure_then_success_emits_once(bus_factory: BusFactory, names: Callable[[str], str]) -> None:
    bus = await bus_factory()
    runtime = runtime_on(bus, names)
    calls = Counter[str]()

    class Flaky:
        name = "flaky"

        async def handle(self, event: Event) -> Sequence[Event]:
            calls[event.id] += 1
            if calls[event.id] <= 3:
                raise RetryableError("upstream_busy", "try again")
            assert isinstance(event, Ping)
            return [event.reply(Pong, n=event.n)]

    out = Collector()
    await bus.subscribe([names("out")], group=names("reader"), handler=out)
    await runtime.add(Flaky(), [names("in")], group=names("flaky"))
    await bus.publish(names("in"), runtime.codec.encode(Ping(n=7)), key="x")
    await eventually(lambda: len(out.messages) == 1)
    await asyncio.sleep(0.3)
    assert len(out.messages) == 1
    assert list(calls.values()) == [4]
    await runtime.stop()


async def test_persistent_failure_ends_in_dead_letter_with_an_answer(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    bus = await bus_factory()
    runtime = runtime_on(bus, names)

    class Broken:
        name = "broken"

        async def handle(self, event: Event) -> Sequence[Event]:
            raise RetryableError("upstream_down", "always down")

    dlq, answers = Collector(), Collector()
    await bus.subscribe([names("dlq")], group=names("dlq-reader"), handler=dlq)
    await bus.subscribe([names("answers")], group=names("answer-reader"), handler=answers)
    await runtime.add(Broken(), [names("in")], group=names("broken"))
    ping = Ping(n=1)
    await bus.publish(names("in"), runtime.codec.encode(ping), key="x")
    await eventually(lambda: len(dlq.messages) == 1 and len(answers.messages) == 1)
    letter = runtime.codec.decode(dlq.messages[0].value)
    assert isinstance(letter, DeadLetter)
    assert letter.reason == "retries_exhausted" and "always down" in letter.error
    assert runtime.codec.decode(letter.original.encode()) == ping
    answer = runtime.codec.decode(answers.messages[0].value)
    assert isinstance(answer, Error) and answer.code == "upstream_down" and answer.request_id == ping.request_id
    await runtime.stop()


async def test_non_retryable_error_answers_without_retrying(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    bus = await bus_factory()
    runtime = runtime_on(bus, names)
    calls = 0

    class Picky:
        name = "picky"

        async def handle(self, event: Event) -> Sequence[Event]:
            nonlocal calls
            calls += 1
            raise AgentError("unknown_business", "no business called nope")

    answers = Collector()
    await bus.subscribe([names("answers")], group=names("answer-reader"), handler=answers)
    await runtime.add(Picky(), [names("in")], group=names("picky"))
    await bus.publish(names("in"), runtime.codec.encode(Ping()), key="x")
    await eventually(lambda: len(answers.messages) == 1)
    answer = runtime.codec.decode(answers.messages[0].value)
    assert isinstance(answer, Error) and answer.code == "unknown_business" and answer.agent == "picky"
    assert calls == 1
    await runtime.stop()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00not json at all", "undecodable"),
        (b'{"type": "mystery", "id": "1"}', "unknown_type"),
        (b'{"type": "ping", "schema_version": 99}', "schema_too_new"),
    ],
)
async def test_unreadable_messages_are_dead_lettered_and_consuming_goes_on(
    bus_factory: BusFactory, names: Callable[[str], str], payload: bytes, reason: str
) -> None:
    bus = await bus_factory()
    runtime = runtime_on(bus, names)

    class Echo:
        name = "echo"

        async def handle(self, event: Event) -> Sequence[Event]:
            assert isinstance(event, Ping)
            return [event.reply(Pong, n=event.n)]

    dlq, out = Collector(), Collector()
    await bus.subscribe([names("dlq")], group=names("dlq-reader"), handler=dlq)
    await bus.subscribe([names("out")], group=names("reader"), handler=out)
    await runtime.add(Echo(), [names("in")], group=names("echo"))
    await bus.publish(names("in"), payload, key="same")
    await bus.publish(names("in"), runtime.codec.encode(Ping(n=2)), key="same")
    await eventually(lambda: len(dlq.messages) == 1 and len(out.messages) == 1)
    letter = runtime.codec.decode(dlq.messages[0].value)
    assert isinstance(letter, DeadLetter) and letter.reason == reason
    assert letter.original.encode() == payload or "\ufffd" in letter.original
    await runtime.stop()


async def test_redelivered_event_is_not_emitted_twice(bus_factory: BusFactory, names: Callable[[str], str]) -> None:
    bus = await bus_factory()
    runtime = runtime_on(bus, names)
    handled = 0

    class Echo:
        name = "echo"

        async def handle(self, event: Event) -> Sequence[Event]:
            nonlocal handled
            handled += 1
            assert isinstance(event, Ping)
            return [event.reply(Pong, n=event.n)]

    out = Collector()
    await bus.subscribe([names("out")], group=names("reader"), handler=out)
    await runtime.add(Echo(), [names("in")], group=names("echo"))
    ping = runtime.codec.encode(Ping(n=3))
    for _ in range(3):
        await bus.publish(names("in"), ping, key="k")
    await eventually(lambda: len(out.messages) == 1)
    await asyncio.sleep(0.3)
    assert len(out.messages) == 1 and handled == 1
    await runtime.stop()


async def test_re_run_after_restart_emits_the_same_ids(bus_factory: BusFactory, names: Callable[[str], str]) -> None:
    """Two runtimes (a crashed worker and its replacement) handling one event emit identical ids."""
    bus = await bus_factory()
    out = Collector()
    await bus.subscribe([names("out")], group=names("reader"), handler=out)

    class Echo:
        name = "echo"

        async def handle(self, event: Event) -> Sequence[Event]:
            assert isinstance(event, Ping)
            return [event.reply(Pong, n=event.n)]

    ping = runtime_on(bus, names).codec.encode(Ping(n=4))
    await bus.publish(names("in"), ping, key="k")
    crashed = runtime_on(bus, names)
    await crashed.add(Echo(), [names("in")], group=names("first"))
    await eventually(lambda: len(out.messages) == 1)
    await crashed.stop()
    replacement = runtime_on(bus, names)
    await replacement.add(Echo(), [names("in")], group=names("second"))
    await eventually(lambda: len(out.messages) == 2)
    await replacement.stop()
    ids = {replacement.codec.decode(m.value).id for m in out.messages}
    assert len(ids) == 1


async def test_a_latest_group_reads_only_what_comes_after_it_joined(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    bus = await bus_factory()
    topic = names("answers")
    await bus.create_topics([TopicSpec(topic, partitions=2)])
    for i in range(5):
        await bus.publish(topic, f"old{i}".encode(), key=str(i))
    late = Collector()
    await bus.subscribe([topic], group=names("client"), handler=late, start_at="latest")
    for i in range(5):
        await bus.publish(topic, f"new{i}".encode(), key=str(i))
    await eventually(lambda: len(late.messages) == 5)
    await asyncio.sleep(0.3)
    assert sorted(m.value for m in late.messages) == [f"new{i}".encode() for i in range(5)]
