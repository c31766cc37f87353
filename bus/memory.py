"""The embedded bus: Kafka's semantics in one process, nothing to install.

Topics are partitioned logs; a key always maps to the same partition.
Every consumer group sees every message; inside a group each partition has
exactly one member, and partitions are reassigned when members join or
leave. Offsets are committed per group as handlers acknowledge, so a member
that stops without finishing its messages leaves them to the next owner.
`run_until_idle()` makes tests deterministic: it returns when every group
has acknowledged everything published to the topics it reads, and raises
what a handler raised on every delivery of a message (such a message is then
acknowledged, so the group moves on, as after a dead letter).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import zlib
from collections import deque
from collections.abc import Mapping, Sequence

from relaychain.bus.base import Message, MessageHandler, StartAt, StartStop, TopicPartition, TopicSpec
from relaychain.bus.dispatch import DEFAULT_REDELIVERY, KeyedDispatcher, OffsetTracker, Redelivery

_TRIM_EVERY = 256
"""A group tries to trim a partition each time its commit point has moved this far: often enough to bound
memory (a partition keeps at most this much behind its slowest group), rarely enough to cost nothing."""


class HandlerFailed(Exception):
    """A handler raised on every delivery of a message; `run_until_idle` raises it with the last error as cause."""


class _PartitionLog:
    """Messages from offset `base` on; the prefix every reading group has committed is dropped.

    Without trimming, a long-running embedded process would keep every event
    it ever moved. A partition no group reads keeps its newest `retention`
    messages, as a Kafka topic keeps what its retention allows.
    """

    def __init__(self, retention: int) -> None:
        self.base = 0
        self.records: deque[Message] = deque()
        self._retention = retention

    @property
    def end(self) -> int:
        return self.base + len(self.records)

    def append(self, message: Message) -> None:
        self.records.append(message)
        if len(self.records) > self._retention:
            self.records.popleft()
            self.base += 1

    def get(self, offset: int) -> Message:
        return self.records[offset - self.base]

    def trim_to(self, offset: int) -> None:
        while self.base < offset and self.records:
            self.records.popleft()
            self.base += 1


class _Topic:
    def __init__(self, name: str, partitions: int, retention: int) -> None:
        self.name = name
        self.logs: list[_PartitionLog] = [_PartitionLog(retention) for _ in range(partitions)]
        self._round_robin = itertools.cycle(range(partitions))

    def partition_for(self, key: str | None) -> int:
        if key is None:
            return next(self._round_robin)
        return zlib.crc32(key.encode()) % len(self.logs)


class _Group:
    def __init__(self, name: str) -> None:
        self.name = name
        self.members: list[MemorySubscription] = []
        self.committed: dict[TopicPartition, int] = {}


class MemoryBus(StartStop):
    """In-process implementation of `relaychain.bus.base.Bus`."""

    def __init__(
        self, *, default_partitions: int = 4, retention: int = 100_000, redelivery: Redelivery = DEFAULT_REDELIVERY
    ) -> None:
        self.default_partitions = default_partitions
        self.retention = retention
        self.redelivery = redelivery
        self._topics: dict[str, _Topic] = {}
        self._groups: dict[str, _Group] = {}
        self._failures: list[HandlerFailed] = []
        self._readers: dict[str, list[MemorySubscription]] = {}
        self._started = False

    @property
    def connected(self) -> bool:
        return self._started

    async def start(self) -> None:
        self._started = True

    async def stop(self) -> None:
        for group in list(self._groups.values()):
            for member in list(group.members):
                await member.stop()
        self._started = False

    async def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        for spec in specs:
            if spec.name not in self._topics:
                self._topics[spec.name] = _Topic(spec.name, spec.partitions, self.retention)
        self._rebalance_all()

    def messages(self, topic: str) -> list[Message]:
        """What `topic` still holds, partition by partition (for tests and tools)."""
        return [m for log in self._topic(topic).logs for m in log.records]

    async def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not self._started:
            raise RuntimeError("MemoryBus is not started")
        created = topic not in self._topics
        log_topic = self._topic(topic)
        partition = log_topic.partition_for(key)
        log = log_topic.logs[partition]
        message = Message(topic, value, key, dict(headers or {}), partition, log.end)
        log.append(message)
        if created:
            self._rebalance_all()
        tp = TopicPartition(topic, partition)
        for member in self._readers.get(topic, ()):
            member.offer(tp, message)

    async def subscribe(
        self,
        topics: Sequence[str],
        *,
        group: str,
        handler: MessageHandler,
        max_in_flight: int = 64,
        start_at: StartAt = "earliest",
    ) -> MemorySubscription:
        for topic in topics:
            self._topic(topic)
        member = MemorySubscription(
            self, self._groups.setdefault(group, _Group(group)), tuple(topics), handler, max_in_flight, start_at
        )
        member.group_state.members.append(member)
        self._rebalance(member.group_state)
        member.start()
        return member

    async def run_until_idle(self, timeout: float = 30.0) -> None:
        """Wait until every group has acknowledged every message on the topics it reads.

        Raises `HandlerFailed` as soon as a message has failed on every delivery.
        """
        async with asyncio.timeout(timeout):
            while not self._idle():
                self._raise_failure()
                await asyncio.sleep(0.001)
        self._raise_failure()

    def retained(self) -> int:
        """Messages held in memory over all topics (retention is bounded, whatever the keys)."""
        return sum(len(log.records) for topic in self._topics.values() for log in topic.logs)

    def _raise_failure(self) -> None:
        if self._failures:
            failure = self._failures.pop(0)
            self._failures.clear()
            raise failure

    def _failed(self, group: str, message: Message, exc: Exception) -> None:
        failure = HandlerFailed(
            f"group {group}: handler raised on all {message.delivery} deliveries of "
            f"{message.topic}[{message.partition}]@{message.offset}: {exc!r}"
        )
        failure.__cause__ = exc
        self._failures.append(failure)

    def _idle(self) -> bool:
        for group in self._groups.values():
            if any(member.in_flight for member in group.members):
                return False
            topics = {t for member in group.members for t in member.topics}
            for topic in topics:
                for partition, log in enumerate(self._topics[topic].logs):
                    if group.committed.get(TopicPartition(topic, partition), log.base) < log.end:
                        return False
        return True

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic(name, self.default_partitions, self.retention)
        return topic

    def _rebalance_all(self) -> None:
        for group in self._groups.values():
            self._rebalance(group)

    def _rebalance(self, group: _Group) -> None:
        """Round-robin each subscribed topic's partitions over the members reading it."""
        wanted: dict[MemorySubscription, set[TopicPartition]] = {m: set() for m in group.members}
        topics = sorted({t for m in group.members for t in m.topics})
        for topic in topics:
            readers = [m for m in group.members if topic in m.topics]
            for partition in range(len(self._topics[topic].logs)):
                wanted[readers[partition % len(readers)]].add(TopicPartition(topic, partition))
        for member, partitions in wanted.items():
            member.assign(frozenset(partitions))
        # Who to offer a publish to, looked up per message: kept here, where membership changes.
        by_topic: dict[str, list[MemorySubscription]] = {}
        for each in self._groups.values():
            for member in each.members:
                for topic in member.topics:
                    by_topic.setdefault(topic, []).append(member)
        self._readers = by_topic

    def _trim(self, tp: TopicPartition) -> None:
        """Drop what every group reading this topic has committed."""
        log = self._topics[tp.topic].logs[tp.partition]
        readers = [g for g in self._groups.values() if any(tp.topic in m.topics for m in g.members)]
        if readers:
            log.trim_to(min(g.committed.get(tp, log.base) for g in readers))

    def _leave(self, member: MemorySubscription) -> None:
        group = member.group_state
        if member in group.members:
            group.members.remove(member)
            self._rebalance(group)


class MemorySubscription:
    """One member of a consumer group on the memory bus."""

    def __init__(
        self,
        bus: MemoryBus,
        group: _Group,
        topics: tuple[str, ...],
        handler: MessageHandler,
        max_in_flight: int,
        start_at: StartAt,
    ) -> None:
        self._bus = bus
        self._start_at = start_at
        self.group_state = group
        self.group = group.name
        self.topics = topics
        self._offsets = OffsetTracker()
        self._positions: dict[TopicPartition, int] = {}
        self._assignment: frozenset[TopicPartition] = frozenset()
        self._dispatcher = KeyedDispatcher(
            handler,
            max_in_flight=max_in_flight,
            on_done=self._acked,
            on_failed=self._failed,
            redelivery=bus.redelivery,
        )
        self._trim_at: dict[TopicPartition, int] = {}
        self._wakeup = asyncio.Event()
        self._context = contextvars.copy_context()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        return self._assignment

    @property
    def in_flight(self) -> int:
        return self._dispatcher.in_flight

    @property
    def failure(self) -> Exception | None:
        """Always None: a message that failed every delivery is reported by `run_until_idle`, then acknowledged."""
        return None

    def start(self) -> None:
        self._task = asyncio.create_task(self._fetch_loop(), name=f"memory-bus:{self.group}")

    def wake(self) -> None:
        self._wakeup.set()

    def offer(self, tp: TopicPartition, message: Message) -> None:
        """A message just appended to `tp`: straight to its lane when this member owns `tp`, has fetched all
        before it and has a free slot, so no fetch-loop wake-up and pass stand between a publish and its
        handler; else the fetch loop takes it in log order.

        The lane's task runs in a copy of the member's context, as if the fetch loop had started it: nothing
        of the publisher's context (its span, its variables) leaks into the handler.
        """
        offset = message.offset
        if tp not in self._assignment or offset is None:
            return
        dispatcher = self._dispatcher
        # `has_room` first: the context is copied only for a message that gets a slot.
        if (
            self._positions.get(tp) == offset
            and not self._stopping
            and dispatcher.has_room
            and dispatcher.offer(message, self._context.copy())
        ):
            self._positions[tp] = offset + 1
            self._offsets.fetched(tp, offset)
        else:
            self.wake()

    def assign(self, partitions: frozenset[TopicPartition]) -> None:
        revoked = self._assignment - partitions
        if revoked:
            self._dispatcher.drop_partitions(revoked)
        for tp in revoked:
            self._offsets.forget(tp)
            self._positions.pop(tp, None)
            self._trim_at.pop(tp, None)
        for tp in partitions - self._assignment:
            # Without a commit the group starts where `start_at` says, as Kafka's auto.offset.reset.
            log = self._bus._topics[tp.topic].logs[tp.partition]  # noqa: SLF001
            fresh = log.end if self._start_at == "latest" else log.base
            position = max(self.group_state.committed.get(tp, fresh), log.base)
            self._positions[tp] = position
            self._offsets.start(tp, position)
            self._trim_at[tp] = position + _TRIM_EVERY
        self._assignment = partitions
        self.wake()

    async def stop(self, drain_timeout: float = 30.0) -> None:
        if self._stopping:
            return
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._dispatcher.drain(drain_timeout)
        self._bus._leave(self)  # noqa: SLF001 - the member and its bus are one unit

    def _acked(self, message: Message) -> None:
        tp = TopicPartition(message.topic, message.partition or 0)
        if tp not in self._assignment:
            return
        self._offsets.acked(tp, message.offset or 0)
        point = self._offsets.commit_point(tp)
        if point is not None and point > self.group_state.committed.get(tp, 0):
            self.group_state.committed[tp] = point
            # A threshold, not `point % N == 0`: acknowledgements out of order make the point jump over multiples.
            if point >= self._trim_at.get(tp, 0):
                self._trim_at[tp] = point + _TRIM_EVERY
                self._bus._trim(tp)  # noqa: SLF001

    def _failed(self, message: Message, exc: Exception) -> None:
        self._bus._failed(self.group, message, exc)  # noqa: SLF001
        self._acked(message)

    async def _fetch_loop(self) -> None:
        while True:
            self._wakeup.clear()
            fetched = False
            for tp in list(self._assignment):
                log = self._bus._topics[tp.topic].logs[tp.partition]  # noqa: SLF001
                position = self._positions.get(tp)
                if position is not None and position < log.base:
                    # Retention dropped messages this member had not reached.
                    position = self._positions[tp] = log.base
                while position is not None and position < log.end and tp in self._assignment:
                    message = log.get(position)
                    self._positions[tp] = position + 1
                    self._offsets.fetched(tp, position)
                    fetched = True
                    await self._dispatcher.submit(message)
                    position = self._positions.get(tp)
            if not fetched:
                await self._wakeup.wait()
