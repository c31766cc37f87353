"""Topic creation: missing topics are created with their partition count and config; existing ones are left alone.

The admin remembers what it created or found, and with which spec, so a
broker that lost its topics (Tansu in memory after a restart) gets them back
as they were: `missing()` asks the broker, `forget()` lets `ensure` re-create.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)

from relaychain.bus.base import BusError, TopicSpec
from relaychain.bus.kafka.settings import KafkaSettings

log = logging.getLogger(__name__)

_DENIED = (TopicAuthorizationFailedError.errno, ClusterAuthorizationFailedError.errno)


class TopicAdmin:
    """Creates topics once per name; remembers which ones exist so publish and subscribe ask only once."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._client = AIOKafkaAdminClient(**settings.client_options())
        self._known: set[str] = set()
        self._specs: dict[str, TopicSpec] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self._client.start()

    async def close(self) -> None:
        await self._client.close()

    def knows(self, topic: str) -> bool:
        return topic in self._known

    def forget(self, topics: Sequence[str]) -> None:
        self._known.difference_update(topics)

    async def missing(self) -> list[str]:
        """Topics this admin made sure of that the broker no longer lists (one metadata round trip)."""
        listed = set(await self._client.list_topics())
        return sorted(self._known - listed)

    async def ensure(self, topics: Sequence[str]) -> None:
        """Create any of `topics` not known yet, as first specified, else with the default partition count."""
        missing = [t for t in dict.fromkeys(topics) if t not in self._known]
        if missing:
            specs = [
                self._specs.get(t)
                or TopicSpec(t, self._settings.default_partitions, self._settings.default_replication_factor)
                for t in missing
            ]
            await self.create(specs, tolerate_denied=True)

    async def create(self, specs: Sequence[TopicSpec], *, tolerate_denied: bool = False) -> None:
        """Create missing topics. With `tolerate_denied`, a principal without the CREATE permission
        (topics managed by the platform, e.g. Strimzi KafkaTopic) carries on: the broker's own answer
        to the publish or subscribe then says whether the topic exists."""
        # One creation at a time: concurrent first publishes to one topic then make one request, not many.
        async with self._lock:
            for spec in specs:
                self._specs.setdefault(spec.name, spec)
            wanted = [s for s in specs if s.name not in self._known]
            if not wanted:
                return
            new_topics = [
                NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.config)) for s in wanted
            ]
            try:
                response = await self._client.create_topics(new_topics)
            except TopicAlreadyExistsError:
                # Raised by some versions when every topic exists; that is what we wanted.
                self._known.update(s.name for s in wanted)
                return
            except KafkaError as exc:
                raise BusError(f"creating topics {[s.name for s in wanted]} failed: {exc!r}") from exc
            failures = []
            # aiokafka builds a Response's fields from its protocol schema at run time, unseen by its annotations.
            for topic_error in response.topic_errors:  # type: ignore[attr-defined]
                name, code = topic_error[0], topic_error[1]
                if code in (0, TopicAlreadyExistsError.errno):
                    self._known.add(name)
                elif tolerate_denied and code in _DENIED:
                    log.warning("not allowed to create topic %s; assuming it is managed elsewhere", name)
                    self._known.add(name)
                else:
                    failures.append(f"{name}: {for_code(code).__name__} {topic_error[-1] or ''}".strip())
            if failures:
                raise BusError("creating topics failed: " + "; ".join(failures), retryable=False)
