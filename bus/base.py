"""The bus interface: publish bytes to topics, consume them under consumer groups.

A backend delivers each message to one member of each subscribed group and
calls its handler. Returning from the handler acknowledges the message; the
backend commits a partition's offset only up to the first message not yet
acknowledged, so anything unacknowledged when a member stops or crashes is
redelivered to whichever member takes the partition over (at-least-once).
Messages with the same key go to one partition and, within a member, are
handled one after another in log order; different keys run concurrently up
to `max_in_flight`, and fetching pauses while that many are in flight.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, NamedTuple, Protocol, Self, runtime_checkable


@dataclass(frozen=True, slots=True)
class Message:
    """One record on a topic. `partition` and `offset` are set on consumed messages."""

    topic: str
    value: bytes
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    partition: int | None = None
    offset: int | None = None
    delivery: int = 1
    """How many times this member has handed the message to a handler (a redelivery after a raise counts)."""


class TopicPartition(NamedTuple):
    """A tuple: hashed and compared in C, and the offset bookkeeping looks one up several times per message."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create: its partition count and broker-side config (retention, ...)."""

    name: str
    partitions: int = 1
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


MessageHandler = Callable[[Message], Awaitable[None]]


class StartStop(ABC):
    """`async with` for anything with `start()` and `stop()`: every bus and client shares this one definition."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


StartAt = Literal["earliest", "latest"]


class BusError(Exception):
    """The broker could not be reached or refused an operation.

    `retryable` says whether the same operation may succeed later (a timeout,
    a leader election, a broker that is briefly unreachable) or never will
    (a message larger than the broker accepts, a denied topic). A broker's
    trouble is transient until shown otherwise; backends say `retryable=False`
    when they know better, and retries are bounded either way.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@runtime_checkable
class Subscription(Protocol):
    group: str
    topics: tuple[str, ...]

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """Partitions this member owns right now."""
        ...

    @property
    def in_flight(self) -> int: ...

    @property
    def failure(self) -> Exception | None:
        """Why this member stopped consuming (a message failed every delivery), or None while it is healthy."""
        ...

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Stop fetching, let in-flight handlers finish (cancelled after `drain_timeout`),
        commit what was acknowledged, and leave the group."""
        ...


@runtime_checkable
class Bus(Protocol):
    @property
    def connected(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Stop every subscription (draining it) and close connections."""
        ...

    async def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create missing topics; existing ones are left as they are."""
        ...

    async def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Return once the broker has acknowledged the message (acks=all on Kafka)."""
        ...

    async def subscribe(
        self,
        topics: Sequence[str],
        *,
        group: str,
        handler: MessageHandler,
        max_in_flight: int = 64,
        start_at: StartAt = "earliest",
    ) -> Subscription:
        """Join `group` on `topics`; return once the member is running.

        `start_at` applies to a group with no committed offset: `earliest`
        reads what the topic holds, `latest` only what is published after
        joining (a client waiting for its own answers).
        """
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
