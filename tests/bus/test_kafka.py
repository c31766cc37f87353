"""Kafka-only behaviour of `relaychain.bus.kafka`: wire format, topic admin, commits across rebalances and restarts.

The backend-independent contract lives in test_contract.py; these tests look
at the broker directly (committed offsets, partition counts) with aiokafka.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from relaychain.bus import Bus, BusError, Message, Subscription, TopicPartition, TopicSpec
from relaychain.bus.kafka import KafkaBus, KafkaSettings, SecurityProtocol
from tests.support.tansu import fast_group_timing
from tests.support.waiting import eventually

KafkaFactory = Callable[..., Awaitable[KafkaBus]]


@pytest.fixture
def unique() -> Callable[[str], str]:
    suffix = uuid.uuid4().hex[:8]
    return lambda base: f"k.{base}.{suffix}"


@pytest.fixture
async def kafka_bus(kafka_bootstrap: str) -> AsyncIterator[KafkaFactory]:
    created: list[KafkaBus] = []

    async def make(**overrides: object) -> KafkaBus:
        options: dict[str, object] = {"commit_interval_s": 0.1, **fast_group_timing(), **overrides}
        bus = KafkaBus(KafkaSettings(bootstrap_servers=kafka_bootstrap, **options))  # type: ignore[arg-type]
        await bus.start()
        created.append(bus)
        return bus

    yield make
    for bus in created:
        await bus.stop()


@pytest.fixture
async def admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await client.start()
    yield client
    await client.close()


async def partition_count(admin: AIOKafkaAdminClient, topic: str) -> int:
    (described,) = await admin.describe_topics([topic])
    return len(described["partitions"])


async def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[TopicPartition, int]:
    # A consumer that never subscribes does not join the group; it only reads the group's offsets.
    # (AIOKafkaAdminClient.list_consumer_group_offsets cannot decode Tansu's OffsetFetch answer.)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        committed = {p: await consumer.committed(KafkaTopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()
    return {TopicPartition(topic, p): offset for p, offset in committed.items() if offset is not None}


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([KafkaTopicPartition(topic, p) for p in range(partitions)])
    finally:
        await consumer.stop()
    return {TopicPartition(tp.topic, tp.partition): offset for tp, offset in ends.items()}


class Recorder:
    """Handler that records what it finished; `block` decides which messages hang until cancelled."""

    def __init__(self, block: Callable[[Message], bool] = lambda _: False) -> None:
        self.done: list[Message] = []
        self._block = block

    async def __call__(self, message: Message) -> None:
        if self._block(message):
            await asyncio.Event().wait()
        await asyncio.sleep(0.002)
        self.done.append(message)


def test_settings_from_url() -> None:
    settings = KafkaSettings.from_url(
        "kafka://alice:s3cret@b1:9092,b2:9093?security_protocol=SASL_SSL&sasl_mechanism=PLAIN&commit_interval_s=2"
    )
    assert settings.bootstrap_servers == ["b1:9092", "b2:9093"]
    assert settings.security_protocol is SecurityProtocol.SASL_SSL
    assert settings.sasl_username == "alice"
    assert settings.sasl_password is not None and settings.sasl_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.commit_interval_s == 2.0
    assert settings.acks == "all" and settings.enable_idempotence is False
    assert KafkaSettings.from_url("kafka://localhost:9092", client_id="worker").client_id == "worker"
    with pytest.raises(ValueError):
        KafkaSettings.from_url("http://localhost:9092")
    with pytest.raises(ValidationError):
        KafkaSettings.from_url("kafka://localhost:9092?security_protocol=TELEPATHY")


@pytest.mark.kafka
async def test_roundtrip_keeps_key_value_and_headers(kafka_bus: KafkaFactory, unique: Callable[[str], str]) -> None:
    bus = await kafka_bus()
    assert bus.connected and isinstance(bus, Bus)
    topic = unique("roundtrip")
    got = Recorder()
    member = await bus.subscribe([topic], group=unique("g"), handler=got)
    assert isinstance(member, Subscription) and member.assignment
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "note": "grüße ✓"}
    await bus.publish(topic, b"\x00binary\xff", key="conversation-1", headers=headers)
    await bus.publish(topic, b"no key, no headers")
    await eventually(lambda: len(got.done) == 2)
    by_value = {m.value: m for m in got.done}
    first = by_value[b"\x00binary\xff"]
    assert first.key == "conversation-1" and dict(first.headers) == headers
    assert first.topic == topic and first.partition is not None and first.offset == 0
    second = by_value[b"no key, no headers"]
    assert second.key is None and dict(second.headers) == {}


@pytest.mark.kafka
async def test_topics_are_created_with_their_partitions_and_left_alone_after(
    kafka_bus: KafkaFactory, admin: AIOKafkaAdminClient, unique: Callable[[str], str]
) -> None:
    bus = await kafka_bus(default_partitions=2)
    explicit, implicit, subscribed = unique("explicit"), unique("implicit"), unique("subscribed")
    await bus.create_topics([TopicSpec(explicit, partitions=3, config={"retention.ms": "3600000"})])
    assert await partition_count(admin, explicit) == 3
    # Existing topics are left as they are, also by another bus that has not seen them yet.
    other = await kafka_bus(default_partitions=2)
    await other.create_topics([TopicSpec(explicit, partitions=6)])
    await other.publish(explicit, b"x")
    assert await partition_count(admin, explicit) == 3
    # Publishing to or subscribing on a missing topic creates it with the default partition count.
    await bus.publish(implicit, b"x")
    assert await partition_count(admin, implicit) == 2
    member = await bus.subscribe([subscribed], group=unique("g"), handler=Recorder())
    assert await partition_count(admin, subscribed) == 2
    await eventually(lambda: len(member.assignment) == 2)


@pytest.mark.kafka
async def test_rebalance_mid_stream_loses_nothing_and_never_commits_past_unacknowledged(
    kafka_bus: KafkaFactory, kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic, group, total = unique("rebalance"), unique("g"), 300
    bus_a, bus_b = await kafka_bus(), await kafka_bus()
    await bus_a.create_topics([TopicSpec(topic, partitions=4)])
    # A never finishes every 7th message: its partitions' commits must stop below them.
    stuck_on_a = Recorder(block=lambda m: int(m.value) % 7 == 0)
    on_b = Recorder()
    member_a = await bus_a.subscribe([topic], group=group, handler=stuck_on_a)
    member_b = await bus_b.subscribe([topic], group=group, handler=on_b)
    await eventually(lambda: len(member_a.assignment) == 2 and len(member_b.assignment) == 2, timeout=30)

    violations: list[str] = []

    def finished() -> dict[TopicPartition, set[int]]:
        offsets: dict[TopicPartition, set[int]] = defaultdict(set)
        for m in (*stuck_on_a.done, *on_b.done):
            offsets[TopicPartition(m.topic, m.partition or 0)].add(m.offset or 0)
        return offsets

    async def watch_commits() -> None:
        while True:
            committed = await committed_offsets(kafka_bootstrap, group, topic, 4)
            acked = finished()  # taken after the commit was read: a superset of what was acked when it was made
            for tp, offset in committed.items():
                missing = set(range(offset)) - acked[tp]
                if missing:
                    violations.append(f"{tp} committed {offset} but {sorted(missing)[:5]} never finished")
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch_commits())
    try:
        for i in range(total):
            await bus_a.publish(topic, str(i).encode(), key=f"key-{i % 20}")
            if i == total // 2:
                await eventually(lambda: any(int(m.value) % 7 for m in stuck_on_a.done))
                await member_a.stop(drain_timeout=0.2)
        await eventually(lambda: len(member_b.assignment) == 4, timeout=30)
        await eventually(
            lambda: {int(m.value) for m in on_b.done} | {int(m.value) for m in stuck_on_a.done} == set(range(total)),
            timeout=30,
        )
        ends = await end_offsets(kafka_bootstrap, topic, 4)
        await eventually(lambda: finished() and all(finished()[tp] >= set(range(end)) for tp, end in ends.items()))

        async def fully_committed() -> bool:
            return await committed_offsets(kafka_bootstrap, group, topic, 4) == ends

        for _ in range(100):
            if await fully_committed():
                break
            await asyncio.sleep(0.1)
        assert await fully_committed()
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    assert not violations, violations[:5]
    # Whatever A left unfinished was taken over by B.
    blocked = {i for i in range(total // 2) if i % 7 == 0}
    assert blocked <= {int(m.value) for m in on_b.done} | {int(m.value) for m in stuck_on_a.done}


@pytest.mark.kafka
async def test_committed_offsets_survive_a_restart(
    kafka_bus: KafkaFactory, kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic, group = unique("restart"), unique("g")
    first_bus = await kafka_bus()
    await first_bus.create_topics([TopicSpec(topic, partitions=2)])
    first = Recorder()
    member = await first_bus.subscribe([topic], group=group, handler=first)
    for i in range(20):
        await first_bus.publish(topic, f"old-{i}".encode(), key=str(i))
    await eventually(lambda: len(first.done) == 20)
    await member.stop()
    ends = await end_offsets(kafka_bootstrap, topic, 2)
    assert await committed_offsets(kafka_bootstrap, group, topic, 2) == ends

    for i in range(5):
        await first_bus.publish(topic, f"new-{i}".encode(), key=str(i))
    second = Recorder()
    second_bus = await kafka_bus()
    await second_bus.subscribe([topic], group=group, handler=second)
    await eventually(lambda: len(second.done) == 5)
    await asyncio.sleep(0.5)
    assert sorted(m.value for m in second.done) == [f"new-{i}".encode() for i in range(5)]


@pytest.mark.kafka
async def test_unacknowledged_messages_are_not_committed_on_stop(
    kafka_bus: KafkaFactory, kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    topic, group = unique("stop"), unique("g")
    bus = await kafka_bus()
    await bus.create_topics([TopicSpec(topic, partitions=1)])
    hanging = Recorder(block=lambda m: m.value == b"3")
    member = await bus.subscribe([topic], group=group, handler=hanging, max_in_flight=8)
    for i in range(6):
        await bus.publish(topic, str(i).encode(), key=str(i))
    await eventually(lambda: len(hanging.done) == 5)
    await member.stop(drain_timeout=0.1)
    # 0, 1, 2 are acknowledged; 3 was cancelled, so 4 and 5 (acknowledged) must wait behind it.
    assert await committed_offsets(kafka_bootstrap, group, topic, 1) == {TopicPartition(topic, 0): 3}

    again = Recorder()
    await bus.subscribe([topic], group=group, handler=again)
    await eventually(lambda: len(again.done) == 3)
    assert sorted(m.value for m in again.done) == [b"3", b"4", b"5"]


@pytest.mark.kafka
async def test_a_member_stopped_while_the_bus_runs_on_is_let_go(
    kafka_bus: KafkaFactory, unique: Callable[[str], str]
) -> None:
    # A process that starts and stops runtimes on one bus (tests, a worker reloading its agents) must not
    # keep every stopped member, its handler and everything the handler holds, for as long as the bus lives.
    bus = await kafka_bus()
    member = await bus.subscribe([unique("gone")], group=unique("g"), handler=Recorder())
    gone = weakref.ref(member)
    await member.stop()
    del member
    gc.collect()
    assert gone() is None


@pytest.mark.kafka
async def test_readiness_follows_the_broker_and_consuming_resumes_after_it_returns(
    unique: Callable[[str], str],
) -> None:
    """A broker down past the grace turns readiness false; back up (an in-memory Tansu that forgot every
    topic and group), the bus re-creates its topics and the same runtime answers again, no restart."""
    from relaychain.bus.codec import EventCodec
    from relaychain.bus.runtime import AgentRuntime, RetryPolicy, Routes
    from relaychain.schemas import Event
    from tests.bus.test_contract import Echo, Ping, Pong
    from tests.support import tansu

    broker = tansu.start()
    settings = KafkaSettings(
        bootstrap_servers=broker.bootstrap,
        commit_interval_s=0.1,
        connection_grace_s=1.5,
        probe_interval_s=0.3,
        request_timeout_ms=3_000,
        **fast_group_timing(),
    )
    bus = KafkaBus(settings)
    await bus.start()
    inbox, outbox = unique("in"), unique("out")
    routes = Routes(type_topics={"pong": outbox}, step_topic=unique, deadletter=unique("dlq"))
    runtime = AgentRuntime(
        bus,
        EventCodec([Ping, Pong]),
        routes,
        retry=RetryPolicy(max_attempts=30, base_delay_s=0.2, max_delay_s=1.0),
    )
    answers: list[Event] = []

    async def collect(message: Message) -> None:
        answers.append(runtime.codec.decode(message.value))

    try:
        await bus.subscribe([outbox], group=unique("reader"), handler=collect)
        await runtime.add(Echo(), [inbox], group=unique("echo"))
        await bus.publish(inbox, runtime.codec.encode(Ping(n=1)), key="a")
        await eventually(lambda: len(answers) == 1, timeout=30)
        assert runtime.ready

        broker.stop()
        await eventually(lambda: not runtime.ready, timeout=10)

        broker = tansu.start(broker.port)
        await eventually(lambda: runtime.ready, timeout=30)
        for _ in range(60):
            try:
                await bus.publish(inbox, runtime.codec.encode(Ping(n=2)), key="b")
                break
            except BusError as exc:
                assert exc.retryable, exc
                await asyncio.sleep(0.5)
        else:
            raise AssertionError("publishing never succeeded in 30 s")
        await eventually(lambda: any(isinstance(a, Pong) and a.n == 2 for a in answers), timeout=60)
    finally:
        await runtime.stop(drain_timeout=2)
        await bus.stop()
        broker.stop()


@pytest.mark.kafka
async def test_a_member_stops_before_committing_past_a_message_that_failed_every_delivery(
    kafka_bus: KafkaFactory, kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    bus = await kafka_bus(max_deliveries=2)
    topic, group = unique("poison"), unique("g")
    await bus.create_topics([TopicSpec(topic, partitions=1)])
    deliveries: list[tuple[int | None, int]] = []

    async def handler(message: Message) -> None:
        deliveries.append((message.offset, message.delivery))
        if message.value == b"poison":
            raise RuntimeError("cannot handle this")

    subscription = await bus.subscribe([topic], group=group, handler=handler)
    await bus.publish(topic, b"fine", key="a")
    await bus.publish(topic, b"poison", key="b")
    await eventually(lambda: subscription.failure is not None)
    assert sorted(deliveries) == [(0, 1), (1, 1), (1, 2)]
    await subscription.stop(drain_timeout=1)
    committed = await committed_offsets(kafka_bootstrap, group, topic, 1)
    assert committed == {TopicPartition(topic, 0): 1}, "committed up to the poison message, never past it"
