"""`KafkaBus`: the `relaychain.bus.base.Bus` protocol on Apache Kafka (or a compatible broker) through aiokafka."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from relaychain.bus.base import BusError, MessageHandler, StartAt, TopicSpec
from relaychain.bus.kafka.admin import TopicAdmin
from relaychain.bus.kafka.settings import KafkaSettings
from relaychain.bus.kafka.subscription import KafkaSubscription

log = logging.getLogger(__name__)


class KafkaBus:
    """One producer and one admin client per bus; one consumer per subscription (each is a group member)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._admin: TopicAdmin | None = None
        self._subscriptions: list[KafkaSubscription] = []

    @classmethod
    def from_url(cls, url: str, **overrides: object) -> KafkaBus:
        return cls(KafkaSettings.from_url(url, **overrides))

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            **self.settings.client_options(),
            acks=self.settings.acks,
            enable_idempotence=self.settings.enable_idempotence,
            linger_ms=self.settings.linger_ms,
        )
        admin = TopicAdmin(self.settings)
        try:
            await producer.start()
            await admin.start()
        except KafkaError as exc:
            await producer.stop()
            await admin.close()
            raise BusError(f"cannot reach Kafka at {','.join(self.settings.bootstrap_servers)}: {exc!r}") from exc
        self._producer, self._admin = producer, admin

    async def stop(self) -> None:
        """Stop every subscription (draining it, committing, leaving its group), then the clients."""
        subscriptions, self._subscriptions = self._subscriptions, []
        await asyncio.gather(*(s.stop() for s in subscriptions), return_exceptions=True)
        producer, admin = self._producer, self._admin
        self._producer = self._admin = None
        if producer is not None:
            await producer.stop()
        if admin is not None:
            await admin.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

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
        except KafkaError as exc:
            raise BusError(f"publishing to {topic} failed: {exc!r}") from exc

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
        subscription = KafkaSubscription(self.settings, tuple(topics), group, handler, max_in_flight, start_at)
        try:
            await subscription.start()
        except KafkaError as exc:
            raise BusError(f"joining group {group} on {list(topics)} failed: {exc!r}") from exc
        except TimeoutError as exc:
            raise BusError(f"group {group} gave no assignment within {self.settings.join_timeout_s}s") from exc
        self._subscriptions.append(subscription)
        return subscription

    def _started_admin(self) -> TopicAdmin:
        if self._admin is None:
            raise RuntimeError("KafkaBus is not started")
        return self._admin
