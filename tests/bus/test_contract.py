"""Bus and runtime contract: every backend must behave like this."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, Literal

import pytest

from relaychain.bus import Bus, BusError, Message, TopicSpec
from relaychain.bus.codec import EventCodec
from relaychain.bus.errors import AgentError, RetryableError
from relaychain.bus.middleware import ConsumeNext, HandleContext, PublishNext
from relaychain.bus.runtime import AgentRuntime, RetryPolicy, Routes
from relaychain.schemas import DeadLetter, Error, Event
from relaychain.schemas.envelope import utc_now
from tests.bus.conftest import BusFactory
from tests.support.waiting import eventually


class Ping(Event):
    type: Literal["ping"] = "ping"
    n: int = 0
    vars_blob: str = ""


class Pong(Event):
    type: Literal["pong"] = "pong"
    n: int = 0


def runtime_on(
    bus: Bus, names: Callable[[str], str], *, side_channels: frozenset[str] = frozenset(), **kwargs: Any
) -> AgentRuntime:
    routes = Routes(
        type_topics={"pong": names("out"), "error": names("answers")},
        step_topic=lambda step: names(step),
        deadletter=names("dlq"),
        side_channels=side_channels,
    )
    retry = RetryPolicy(max_attempts=4, base_delay_s=0.001, max_delay_s=0.01)
    return AgentRuntime(bus, EventCodec([Ping, Pong]), routes, retry=retry, **kwargs)


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


class Echo:
    name = "echo"

    async def handle(self, event: Event) -> Sequence[Event]:
        assert isinstance(event, Ping)
        return [event.reply(Pong, n=event.n)]


class FailingPublish:
    """A publish hook that refuses the first `times` messages to one topic as a broker would."""

    def __init__(self, topic: str, times: int, error: Exception) -> None:
        self.topic, self.times, self.error = topic, times, error
        self.refused = 0

    async def consume(self, call_next: ConsumeNext, ctx: HandleContext) -> None:
        await call_next()

    async def publish(self, call_next: PublishNext, message: Message) -> None:
        if message.topic == self.topic and self.refused < self.times:
            self.refused += 1
            raise self.error
        await call_next(message)


async def answers_and_letters(
    bus: Bus, runtime: AgentRuntime, names: Callable[[str], str]
) -> tuple[Collector, Collector, Collector]:
    answers, dlq, out = Collector(), Collector(), Collector()
    await bus.subscribe([names("answers")], group=names("answer-reader"), handler=answers)
    await bus.subscribe([names("dlq")], group=names("dlq-reader"), handler=dlq)
    await bus.subscribe([names("out")], group=names("reader"), handler=out)
    return answers, dlq, out


async def test_an_output_with_nowhere_to_go_answers_and_dead_letters_and_the_key_moves_on(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    bus = await bus_factory()
    runtime = runtime_on(bus, names)

    class Lost:
        name = "lost"

        async def handle(self, event: Event) -> Sequence[Event]:
            assert isinstance(event, Ping)
            if event.n == 0:
                return [event.reply(Ping, n=1)]  # no type route and an empty slip: unroutable
            return [event.reply(Pong, n=event.n)]

    answers, dlq, out = await answers_and_letters(bus, runtime, names)
    await runtime.add(Lost(), [names("in")], group=names("lost"))
    first = Ping(n=0)
    await bus.publish(names("in"), runtime.codec.encode(first), key="same")
    await bus.publish(names("in"), runtime.codec.encode(Ping(n=5)), key="same")
    await eventually(lambda: len(answers.messages) == 1 and len(dlq.messages) == 1 and len(out.messages) == 1)
    answer = runtime.codec.decode(answers.messages[0].value)
    assert isinstance(answer, Error) and answer.code == "unroutable" and answer.request_id == first.request_id
    letter = runtime.codec.decode(dlq.messages[0].value)
    assert isinstance(letter, DeadLetter) and letter.reason == "unroutable"
    await runtime.stop()


async def test_an_output_over_the_size_limit_becomes_an_error_answer(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    bus = await bus_factory()
    runtime = runtime_on(bus, names, max_event_bytes=4096)

    class Bloated:
        name = "bloated"

        async def handle(self, event: Event) -> Sequence[Event]:
            return [Pong(request_id=event.request_id, n=event.n, business="b" * 10_000)]

    answers, dlq, out = await answers_and_letters(bus, runtime, names)
    await runtime.add(Bloated(), [names("in")], group=names("bloated"))
    ping = Ping(n=1, business="x" * 3_000)
    await bus.publish(names("in"), runtime.codec.encode(ping), key="k")
    await eventually(lambda: len(answers.messages) == 1 and len(dlq.messages) == 1)
    answer = runtime.codec.decode(answers.messages[0].value)
    assert isinstance(answer, Error) and answer.code == "event_too_large"
    letter = runtime.codec.decode(dlq.messages[0].value)
    assert isinstance(letter, DeadLetter) and letter.reason == "event_too_large"
    assert len(dlq.messages[0].value) <= 4096
    assert out.messages == []
    await runtime.stop()


async def test_a_transient_publish_failure_is_retried_and_emits_once(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    bus = await bus_factory()
    refuse = FailingPublish(names("out"), 2, BusError("UnknownError"))
    runtime = runtime_on(bus, names, middlewares=[refuse])
    answers, dlq, out = await answers_and_letters(bus, runtime, names)
    await runtime.add(Echo(), [names("in")], group=names("echo"))
    await bus.publish(names("in"), runtime.codec.encode(Ping(n=3)), key="k")
    await eventually(lambda: len(out.messages) == 1)
    assert refuse.refused == 2
    assert answers.messages == [] and dlq.messages == []
    await runtime.stop()


class RefusingAsItIsCalled(FailingPublish):
    """A plain (not `async def`) publish hook, as `Middleware.publish` allows: it raises before any await, on the
    second message to the topic (the first one's publish has already begun)."""

    seen = 0

    def publish(self, call_next: PublishNext, message: Message) -> Awaitable[None]:  # type: ignore[override]
        if message.topic == self.topic:
            self.seen += 1
            if self.seen == 2:
                self.refused += 1
                raise self.error
        return call_next(message)


async def test_a_plain_publish_hook_raising_as_it_is_called_fails_only_its_message_of_several(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    bus = await bus_factory()
    refuse = RefusingAsItIsCalled(names("out"), 1, BusError("UnknownError"))
    runtime = runtime_on(bus, names, middlewares=[refuse])

    class Twice:
        name = "twice"

        async def handle(self, event: Event) -> Sequence[Event]:
            assert isinstance(event, Ping)
            return [event.reply(Pong, n=event.n), event.reply(Pong, n=event.n + 1)]

    answers, dlq, out = await answers_and_letters(bus, runtime, names)
    await runtime.add(Twice(), [names("in")], group=names("twice"))
    await bus.publish(names("in"), runtime.codec.encode(Ping(n=3)), key="k")
    await eventually(lambda: len(out.messages) == 2)
    await asyncio.sleep(0.2)  # nothing more may follow: a retry of the whole hop would publish the first again
    assert refuse.refused == 1 and refuse.seen == 3
    assert sorted(runtime.codec.decode(m.value).n for m in out.messages) == [3, 4]  # type: ignore[attr-defined]
    assert answers.messages == [] and dlq.messages == []
    await runtime.stop()


async def test_a_publish_the_broker_refuses_for_good_answers_and_dead_letters(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    bus = await bus_factory()
    refuse = FailingPublish(names("out"), 100, BusError("MessageSizeTooLargeError", retryable=False))
    runtime = runtime_on(bus, names, middlewares=[refuse])
    answers, dlq, _ = await answers_and_letters(bus, runtime, names)
    await runtime.add(Echo(), [names("in")], group=names("echo"))
    await bus.publish(names("in"), runtime.codec.encode(Ping(n=3)), key="k")
    await eventually(lambda: len(answers.messages) == 1 and len(dlq.messages) == 1)
    assert refuse.refused == 1
    answer = runtime.codec.decode(answers.messages[0].value)
    assert isinstance(answer, Error) and answer.code == "publish_failed"
    await runtime.stop()


async def test_a_failing_dead_letter_publish_is_retried_until_it_lands(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    bus = await bus_factory()
    refuse = FailingPublish(names("dlq"), 3, BusError("broker unreachable", retryable=True))
    runtime = runtime_on(bus, names, middlewares=[refuse])

    class Broken:
        name = "broken"

        async def handle(self, event: Event) -> Sequence[Event]:
            raise RetryableError("upstream_down", "always down")

    answers, dlq, _ = await answers_and_letters(bus, runtime, names)
    await runtime.add(Broken(), [names("in")], group=names("broken"))
    await bus.publish(names("in"), runtime.codec.encode(Ping(n=1)), key="k")
    await eventually(lambda: len(answers.messages) == 1 and len(dlq.messages) == 1)
    assert refuse.refused == 3
    await runtime.stop()


async def test_a_handler_that_crashes_once_is_tried_again_and_answers(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    bus = await bus_factory()
    runtime = runtime_on(bus, names)
    calls = 0

    class CrashOnce:
        name = "crash-once"

        async def handle(self, event: Event) -> Sequence[Event]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise KeyError("a bug that a retry rides out")
            assert isinstance(event, Ping)
            return [event.reply(Pong, n=event.n)]

    answers, dlq, out = await answers_and_letters(bus, runtime, names)
    await runtime.add(CrashOnce(), [names("in")], group=names("crash"))
    await bus.publish(names("in"), runtime.codec.encode(Ping(n=2)), key="k")
    await eventually(lambda: len(out.messages) == 1)
    assert calls == 2 and answers.messages == [] and dlq.messages == []
    await runtime.stop()


@pytest.mark.parametrize(
    "payload",
    [
        b'{"type": "ping", "id": "1", "request_id": "req-1", "business": "b\xff\xfe"}',
        b'{"type": "ping", "id": "1", "request_id": "req-1", "business": "\\ud800"}',
    ],
    ids=["invalid-utf8", "lone-surrogate"],
)
async def test_unreadable_bytes_with_a_request_id_still_answer_the_caller(
    bus_factory: BusFactory, names: Callable[[str], str], payload: bytes
) -> None:
    bus = await bus_factory()
    runtime = runtime_on(bus, names)
    answers, dlq, _ = await answers_and_letters(bus, runtime, names)
    await runtime.add(Echo(), [names("in")], group=names("echo"))
    await bus.publish(names("in"), payload, key="k")
    await eventually(lambda: len(answers.messages) == 1 and len(dlq.messages) == 1)
    answer = runtime.codec.decode(answers.messages[0].value)
    assert isinstance(answer, Error) and answer.request_id == "req-1" and answer.code == "undecodable"
    await runtime.stop()


async def test_a_side_channel_failure_never_answers_the_caller(
    bus_factory: BusFactory, names: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    bus = await bus_factory()
    lost: list[tuple[str, str]] = []
    runtime = runtime_on(
        bus,
        names,
        side_channels=frozenset({"ping"}),
        side_channel_retry=RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.01),
        on_side_channel_loss=lambda event, reason: lost.append((event.id, reason)),
    )
    calls = 0

    class Ledger:
        name = "ledger"

        async def handle(self, event: Event) -> Sequence[Event]:
            nonlocal calls
            calls += 1
            raise AgentError("ledger_locked", "database is locked")

    answers, dlq, _ = await answers_and_letters(bus, runtime, names)
    await runtime.add(Ledger(), [names("in")], group=names("ledger"))
    usage = Ping(n=1)
    with caplog.at_level("ERROR", logger="relaychain.bus.runtime"):
        await bus.publish(names("in"), runtime.codec.encode(usage), key="k")
        await eventually(lambda: len(dlq.messages) == 1 and len(lost) == 1)
    assert calls == 3
    assert lost == [(usage.id, "retries_exhausted")]
    assert usage.id in caplog.text
    letter = runtime.codec.decode(dlq.messages[0].value)
    assert isinstance(letter, DeadLetter) and "database is locked" in letter.error
    await asyncio.sleep(0.2)
    assert answers.messages == []
    await runtime.stop()


async def test_expired_work_is_answered_without_calling_the_agent(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    bus = await bus_factory()
    runtime = runtime_on(bus, names)
    calls = 0

    class Costly:
        name = "costly"

        async def handle(self, event: Event) -> Sequence[Event]:
            nonlocal calls
            calls += 1
            return [event.reply(Pong)]

    answers, _, out = await answers_and_letters(bus, runtime, names)
    await runtime.add(Costly(), [names("in")], group=names("costly"))
    late = Ping(deadline=utc_now() - timedelta(seconds=1))
    await bus.publish(names("in"), runtime.codec.encode(late), key="k")
    await bus.publish(names("in"), runtime.codec.encode(Ping(deadline=utc_now() + timedelta(minutes=5))), key="k")
    await eventually(lambda: len(answers.messages) == 1 and len(out.messages) == 1)
    answer = runtime.codec.decode(answers.messages[0].value)
    assert isinstance(answer, Error) and answer.code == "deadline_exceeded" and answer.request_id == late.request_id
    assert calls == 1
    await runtime.stop()


async def test_an_agent_is_warmed_up_before_it_joins_and_readiness_waits(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    bus = await bus_factory()
    runtime = runtime_on(bus, names)
    loaded = asyncio.Event()
    seen_ready: list[bool] = []

    class Heavy(Echo):
        async def warm_up(self) -> None:
            seen_ready.append(runtime.ready)
            loaded.set()

    await runtime.add(Heavy(), [names("in")], group=names("heavy"))
    assert loaded.is_set() and seen_ready == [False]
    await eventually(lambda: runtime.ready)
    await runtime.stop()


async def test_side_channel_outputs_still_go_when_another_output_is_too_large(
    bus_factory: BusFactory, names: Callable[[str], str]
) -> None:
    """A model call that was paid for is billed even when its answer cannot be published."""
    bus = await bus_factory()
    runtime = runtime_on(bus, names, side_channels=frozenset({"pong"}), max_event_bytes=4096)

    class PaidButBloated:
        name = "paid"

        async def handle(self, event: Event) -> Sequence[Event]:
            usage = event.reply(Pong, n=1)
            return [usage, event.reply(Ping, n=2, slip=("next",), vars_blob="x" * 10_000)]

    answers, dlq, out = await answers_and_letters(bus, runtime, names)
    await runtime.add(PaidButBloated(), [names("in")], group=names("paid"))
    await bus.publish(names("in"), runtime.codec.encode(Ping(n=1)), key="k")
    await eventually(lambda: len(answers.messages) == 1 and len(dlq.messages) == 1 and len(out.messages) == 1)
    answer = runtime.codec.decode(answers.messages[0].value)
    assert isinstance(answer, Error) and answer.code == "event_too_large"
    await runtime.stop()
