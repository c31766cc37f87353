"""`KafkaBus`: the `relaychain.bus.base.Bus` protocol on Apache Kafka (or a compatible broker) through aiokafka.

`connected` is honest: it is true only while a broker round trip (a publish
or the periodic metadata probe) succeeded within `connection_grace_s`. The
probe also notices topics the broker lost (an in-memory broker restarted)
and re-creates them, so consumers and producers resume without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError, UnknownError, UnknownTopicOrPartitionError

from relaychain.bus.base import BusError, MessageHandler, StartAt, StartStop, TopicSpec
from relaychain.bus.kafka.admin import TopicAdmin
from relaychain.bus.kafka.partitioner import partition_for
from relaychain.bus.kafka.settings import KafkaSettings
from relaychain.bus.kafka.subscription import KafkaSubscription

log = logging.getLogger(__name__)


class KafkaBus(StartStop):
    """One producer and one admin client per bus; one consumer per subscription (each is a group member)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._admin: TopicAdmin | None = None
        self._subscriptions: list[KafkaSubscription] = []
        self._last_round_trip = float("-inf")
        self._probe_task: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, **overrides: object) -> KafkaBus:
        return cls(KafkaSettings.from_url(url, **overrides))

    @property
    def connected(self) -> bool:
        """Started, and the broker answered within the grace period."""
        recent = time.monotonic() - self._last_round_trip < self.settings.connection_grace_s
        return self._producer is not None and recent

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            **self.settings.client_options(),
            acks=self.settings.acks,
            enable_idempotence=self.settings.enable_idempotence,
            linger_ms=self.settings.linger_ms,
            max_batch_size=self.settings.max_batch_bytes,
            partitioner=partition_for,
        )
        admin = TopicAdmin(self.settings)
        try:
            await producer.start()
            await admin.start()
        except KafkaError as exc:
            await producer.stop()
            await admin.close()
            raise BusError(
                f"cannot reach Kafka at {','.join(self.settings.bootstrap_servers)}: {exc!r}", retryable=_transient(exc)
            ) from exc
        self._producer, self._admin = producer, admin
        self._last_round_trip = time.monotonic()
        self._probe_task = asyncio.create_task(self._probe_loop(), name="kafka-probe")

    async def stop(self) -> None:
        """Stop every subscription (draining it, committing, leaving its group), then the clients."""
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
            self._probe_task = None
        subscriptions, self._subscriptions = self._subscriptions, []
        await asyncio.gather(*(s.stop() for s in subscriptions), return_exceptions=True)
        producer, admin = self._producer, self._admin
        self._producer = self._admin = None
        if producer is not None:
            await producer.stop()
        if admin is not None:
            await admin.close()

    async def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        await self._started_admin().create(specs)

    async def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        producer = self._producer
        if producer is None:
            raise RuntimeError("KafkaBus is not started")
        admin = self._started_admin()
        if not admin.knows(topic):
            # Brokers may not auto-create topics (auto.create.topics.enable=false); create with our defaults.
            await admin.ensure([topic])
        try:
            delivery = await producer.send(
                topic,
                value,
                key=key.encode("utf-8") if key is not None else None,
                headers=[(name, text.encode("utf-8")) for name, text in (headers or {}).items()],
            )
            # The first await only queues the record; this one is the broker's acks=all answer.
            await delivery
        except UnknownTopicOrPartitionError as exc:
            # The broker lost the topic (restarted in memory): create it again before the retry.
            admin.forget([topic])
            raise BusError(f"publishing to {topic} failed: {exc!r}", retryable=True) from exc
        except KafkaError as exc:
            raise BusError(f"publishing to {topic} failed: {exc!r}", retryable=_transient(exc)) from exc
        self._last_round_trip = time.monotonic()

    async def subscribe(
        self,
        topics: Sequence[str],
        *,
        group: str,
        handler: MessageHandler,
        max_in_flight: int = 64,
        start_at: StartAt = "earliest",
    ) -> KafkaSubscription:
        """Join `group`; return once the member has its first assignment."""
        await self._started_admin().ensure(topics)
        subscription = KafkaSubscription(
            self.settings,
            tuple(topics),
            group,
            handler,
            max_in_flight,
            start_at,
            connected=lambda: self.connected,
            on_stopped=self._forget,
        )
        try:
            await subscription.start()
        except KafkaError as exc:
            raise BusError(
                f"joining group {group} on {list(topics)} failed: {exc!r}", retryable=_transient(exc)
            ) from exc
        except TimeoutError as exc:
            raise BusError(f"group {group} gave no assignment within {self.settings.join_timeout_s}s") from exc
        self._subscriptions.append(subscription)
        return subscription

    def _forget(self, subscription: KafkaSubscription) -> None:
        # A member stopped on its own (a runtime that stops its agents while the bus goes on) is let go.
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    async def _probe_loop(self) -> None:
        """Ask the broker for its topics every `probe_interval_s`: proof of a round trip, and lost topics back.

        Members that held their commits while the broker was unreachable compare their positions with the
        broker's offsets once it answers again (a broker that restarted empty forgot them)."""
        interval = self.settings.probe_interval_s
        while True:
            await asyncio.sleep(interval)
            admin = self._started_admin()
            try:
                async with asyncio.timeout(max(interval, 1.0) * 2):
                    lost = await admin.missing()
                    self._last_round_trip = time.monotonic()
                    if lost:
                        log.warning("the broker lost topics %s; creating them again", lost)
                        admin.forget(lost)
                        await admin.ensure(lost)
                    await asyncio.gather(*(s.resync_after_outage() for s in self._subscriptions if s.commits_held))
            except (KafkaError, BusError, TimeoutError, OSError) as exc:
                log.debug("broker probe failed: %r", exc)

    def _started_admin(self) -> TopicAdmin:
        if self._admin is None:
            raise RuntimeError("KafkaBus is not started")
        return self._admin


def _transient(exc: KafkaError) -> bool:
    """Worth retrying: what aiokafka marks retriable, plus errors a healthy broker gives transiently."""
    return bool(exc.retriable) or isinstance(exc, UnknownError | KafkaTimeoutError)
