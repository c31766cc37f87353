"""One consumer-group member on Kafka: fetch, dispatch, commit what was acknowledged.

Guarantees, in the order a message lives through them:

- Fetching (`getmany` in one task) hands messages to a `KeyedDispatcher`;
  `submit` blocks while `max_in_flight` are unfinished, which pauses fetching.
- A handler returning acknowledges its message; the `OffsetTracker` moves a
  partition's commit point over contiguous acknowledged offsets only, so an
  offset is never committed past an unacknowledged message.
- Commit points are committed every `commit_interval_s`, when partitions are
  revoked, and on stop; never per message.
- On revoke (before the group reassigns anything) queued messages of the
  revoked partitions are dropped, in-flight ones get `revoke_timeout_s` to
  finish, their commit points are committed, and only then does the listener
  return. Whatever was not acknowledged is redelivered to the next owner.
- A failed commit (the group rebalanced behind our back, aiokafka#929) is
  logged and ignored: those messages will be redelivered, and consumers are
  idempotent on event ids.
- A handler that raises gets its message again (`max_deliveries` times in
  all). If every delivery raised, the member stops fetching and reports
  `failure` (the worker's liveness turns false): the partition's commit point
  stays before that message and nothing after it is fetched, so a restarted
  member starts from it. Offsets never move past a message left behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import ConsumerStoppedError, IllegalStateError, KafkaError

from relaychain.bus.base import Message, MessageHandler, StartAt, TopicPartition
from relaychain.bus.dispatch import KeyedDispatcher, OffsetTracker, Redelivery
from relaychain.bus.kafka.settings import KafkaSettings

log = logging.getLogger(__name__)


class KafkaSubscription:
    """A member of `group` reading `topics`; created and started by `KafkaBus.subscribe`."""

    def __init__(
        self,
        settings: KafkaSettings,
        topics: tuple[str, ...],
        group: str,
        handler: MessageHandler,
        max_in_flight: int,
        start_at: StartAt = "earliest",
        connected: Callable[[], bool] = lambda: True,
        on_stopped: Callable[[KafkaSubscription], None] = lambda _: None,
    ) -> None:
        self.group = group
        self._connected = connected
        self._on_stopped = on_stopped
        self.topics = topics
        self._settings = settings
        self._start_at = start_at
        self._consumer = AIOKafkaConsumer(
            **settings.client_options(),
            group_id=group,
            enable_auto_commit=False,
            # A new agent group starts at the beginning (events published before its first member joined still
            # count); a client waiting for its own answers starts at the end.
            auto_offset_reset=start_at,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            rebalance_timeout_ms=settings.max_poll_interval_ms,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
        )
        self._offsets = OffsetTracker()
        self._committed: dict[TopicPartition, int] = {}
        self._assignment: frozenset[TopicPartition] = frozenset()
        self._dispatcher = KeyedDispatcher(
            handler,
            max_in_flight=max_in_flight,
            on_done=self._acked,
            on_failed=self._failed,
            redelivery=Redelivery(max_deliveries=settings.max_deliveries),
        )
        self._failure: Exception | None = None
        # Bumped at every revoke so the fetch loop drops the rest of a batch fetched before it.
        self._generation = 0
        # Bumped per partition when resync_after_outage rewinds it: records fetched before the seek are dropped.
        self._rewinds: dict[TopicPartition, int] = {}
        self._commit_lock = asyncio.Lock()
        self._joined = asyncio.Event()
        self._fetch_task: asyncio.Task[None] | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        # Set while the broker is unreachable: a commit point from before an outage must not land in a broker
        # that restarted empty (it would skip the new logs' first records); released by resync_after_outage.
        self._commits_held = False

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """Partitions this member owns right now; non-empty means it is ready to consume."""
        return self._assignment

    @property
    def in_flight(self) -> int:
        return self._dispatcher.in_flight

    @property
    def failure(self) -> Exception | None:
        return self._failure

    async def start(self) -> None:
        """Join the group; return after the first assignment (which may be empty in a crowded group)."""
        self._consumer.subscribe(list(self.topics), listener=_Listener(self))
        await self._consumer.start()
        self._fetch_task = asyncio.create_task(self._fetch_loop(), name=f"kafka-fetch:{self.group}")
        self._commit_task = asyncio.create_task(self._commit_loop(), name=f"kafka-commit:{self.group}")
        try:
            await asyncio.wait_for(self._joined.wait(), self._settings.join_timeout_s)
            # Resolve where reading starts now, not at the first fetch: with start_at="latest" a message
            # published right after subscribe returns must not fall before the reset point.
            for tp in self._assignment:
                await self._consumer.position(KafkaTopicPartition(tp.topic, tp.partition))
        except BaseException:
            await self.stop(drain_timeout=0)
            raise

    async def stop(self, drain_timeout: float = 30.0) -> None:
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        try:
            for task in (self._fetch_task, self._commit_task):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            if not await self._dispatcher.drain(drain_timeout):
                log.warning("group %s: handlers still running after %.1fs were cancelled", self.group, drain_timeout)
            await self._commit(self._offsets.commit_points())
            # Leaving the group (consumer.stop) lets the others take our partitions at once.
            _let_first_generation_leave(self._consumer)
            await self._consumer.stop()
            self._assignment = frozenset()
        finally:
            self._stopped.set()
            self._on_stopped(self)

    # --- fetching ---------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=self._settings.fetch_max_records)
                # getmany returns nothing while a rebalance is in progress, and nothing has run since it
                # returned: these records belong to the current generation.
                generation = self._generation
                rewinds = dict(self._rewinds)
                for ktp, records in batches.items():
                    tp = TopicPartition(ktp.topic, ktp.partition)
                    await self._submit_batch(tp, records, generation, rewinds.get(tp, 0))
        except ConsumerStoppedError:
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Fetching stopped for good (e.g. authorisation): the member reports it (liveness fails, the pod
            # restarts and reads on from the commit point) rather than hang silently.
            log.exception("group %s: fetching failed; the member stops consuming", self.group)
            self._failure = exc
            raise

    async def _submit_batch(
        self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]], generation: int, rewind: int = 0
    ) -> None:
        offsets, dispatcher = self._offsets, self._dispatcher
        # Revokes, rewinds and resyncs run only while this loop awaits: the checks are due after an await only.
        checked = False
        for record in records:
            if not checked:
                if self._rewinds.get(tp, 0) != rewind:
                    # Rewound since this batch was fetched: the partition is read again from the beginning.
                    return
                if self._generation != generation:
                    # Revoked since this batch was fetched: the next owner reads these from the committed offset.
                    return
                if offsets.commit_point(tp) is None:
                    # Tracking starts at the first record of the generation: the position aiokafka
                    # resumed from (the committed offset). Not in on_partitions_assigned: records of
                    # the new assignment can reach us before that callback has run.
                    offsets.start(tp, record.offset)
                    self._committed[tp] = record.offset
                checked = True
            offsets.fetched(tp, record.offset)
            message = _to_message(record)
            if dispatcher.offer(message):
                continue
            await dispatcher.submit(message)
            checked = False
            if self._generation != generation:
                # submit was blocked across a revoke; the lane task it created has not started yet
                # (nothing awaited since), so this drops it. No newer message of `tp` exists yet.
                dispatcher.drop_partitions([tp])
                return

    def _acked(self, message: Message) -> None:
        # A revoked partition or an older copy of something already committed moves nothing (see `acked`).
        self._offsets.acked(TopicPartition(message.topic, message.partition or 0), message.offset or 0)

    def _failed(self, message: Message, exc: Exception) -> None:
        if self._failure is None:
            log.error(
                "group %s: handler raised on all %d deliveries of %s[%s]@%s; the member stops consuming "
                "and the partition is redelivered from its commit point after a restart: %r",
                self.group,
                message.delivery,
                message.topic,
                message.partition,
                message.offset,
                exc,
            )
            self._failure = exc
        if self._fetch_task is not None:
            self._fetch_task.cancel()

    @property
    def commits_held(self) -> bool:
        return self._commits_held

    async def resync_after_outage(self) -> None:
        """Positions from before a broker outage mean nothing if the broker forgot this group (an in-memory
        broker restarted with empty logs): partitions whose offsets the broker no longer has are read again
        from the beginning, and what was tracked for them is dropped, never committed. A broker that kept
        its state still has the offsets, and nothing moves. Commits stay held until this has run once
        on the broker that answers now."""
        assigned = self._consumer.assignment()
        forgotten: list[KafkaTopicPartition] = []
        stale: list[KafkaTopicPartition] = []
        try:
            for ktp in assigned:
                if await self._consumer.committed(ktp) is not None:
                    continue
                forgotten.append(ktp)
                if self._start_at == "earliest" and await self._consumer.position(ktp) > 0:
                    stale.append(ktp)
        except (KafkaError, IllegalStateError) as exc:
            log.debug("group %s: cannot compare positions after the outage yet: %r", self.group, exc)
            return
        if stale:
            log.warning("group %s: the broker forgot offsets of %s; reading them from the beginning", self.group, stale)
        for ktp in forgotten:
            tp = TopicPartition(ktp.topic, ktp.partition)
            if ktp in stale:
                # Only this partition's queued records go (they are read again); other partitions go on.
                self._rewinds[tp] = self._rewinds.get(tp, 0) + 1
                self._dispatcher.drop_partitions([tp])
            self._offsets.forget(tp)
            self._committed.pop(tp, None)
        if stale:
            await self._consumer.seek_to_beginning(*stale)
        self._commits_held = False

    # --- committing -------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.commit_interval_s)
            await self._commit(self._offsets.commit_points())

    async def _commit(self, partitions: Iterable[TopicPartition]) -> None:
        if not self._connected():
            self._commits_held = True
        if self._commits_held:
            return
        async with self._commit_lock:
            offsets: dict[KafkaTopicPartition, int] = {}
            for tp in partitions:
                point = self._offsets.commit_point(tp)
                if point is not None and point > self._committed.get(tp, -1):
                    offsets[KafkaTopicPartition(tp.topic, tp.partition)] = point
            if not offsets:
                return
            try:
                await self._consumer.commit(offsets)
            except (KafkaError, IllegalStateError) as exc:
                # The group moved on without us (aiokafka#929): these offsets will be redelivered.
                log.warning("group %s: commit of %s failed, messages will be redelivered: %r", self.group, offsets, exc)
                return
            for ktp, offset in offsets.items():
                self._committed[TopicPartition(ktp.topic, ktp.partition)] = offset

    # --- rebalancing (called by aiokafka's coordinator through _Listener) -------

    async def _on_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        self._generation += 1
        revoked = revoked | self._assignment | self._offsets.commit_points().keys()
        self._assignment = self._assignment - revoked
        # Not-started messages go; a submit blocked in the fetch loop drops its own message (see _submit_batch).
        self._dispatcher.drop_partitions(revoked)
        if not await self._dispatcher.wait_for_partitions(revoked, self._settings.revoke_timeout_s):
            log.warning(
                "group %s: handlers of revoked partitions still running after %.1fs; their messages will be redelivered",
                self.group,
                self._settings.revoke_timeout_s,
            )
        await self._commit(revoked)
        for tp in revoked:
            self._offsets.forget(tp)
            self._committed.pop(tp, None)

    async def _on_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        # Nothing awaited here: the fetch loop may already be handed records of these partitions.
        self._assignment = assigned
        self._joined.set()


class _Listener(ConsumerRebalanceListener):
    """Adapts aiokafka's callbacks to the member; aiokafka waits for both before going on."""

    def __init__(self, member: KafkaSubscription) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: Iterable[KafkaTopicPartition]) -> None:
        await self._member._on_revoked(_ours(revoked))  # noqa: SLF001 - listener and member are one unit

    async def on_partitions_assigned(self, assigned: Iterable[KafkaTopicPartition]) -> None:
        await self._member._on_assigned(_ours(assigned))  # noqa: SLF001


def _let_first_generation_leave(consumer: AIOKafkaConsumer) -> None:
    """Make aiokafka send LeaveGroup even when the group is in generation 0.

    Apache Kafka numbers generations from 1; Tansu from 0, and aiokafka only
    leaves a group when `generation > 0`. Without the LeaveGroup the other
    members wait a whole session timeout before they take our partitions.
    The generation is not sent with LeaveGroup, so raising it right before
    `stop()` changes nothing else (the heartbeat task is stopped first).
    """
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is not None and getattr(coordinator, "generation", None) == 0:
        coordinator.generation = 1


def _ours(partitions: Iterable[KafkaTopicPartition]) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(tp.topic, tp.partition) for tp in partitions)


def _to_message(record: ConsumerRecord[bytes, bytes]) -> Message:
    headers = {name: value.decode("utf-8", "replace") for name, value in record.headers or ()}
    return Message(
        topic=record.topic,
        value=record.value if record.value is not None else b"",
        key=record.key.decode("utf-8", "replace") if record.key is not None else None,
        headers=headers,
        partition=record.partition,
        offset=record.offset,
    )
