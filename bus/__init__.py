"""The bus: one small interface, an in-memory and a Kafka backend, and the runtime that hosts agents."""

from relaychain.bus.base import (
    Bus,
    BusError,
    Message,
    MessageHandler,
    Subscription,
    TopicPartition,
    TopicSpec,
)
from relaychain.bus.memory import MemoryBus

__all__ = [
    "Bus",
    "BusError",
    "MemoryBus",
    "Message",
    "MessageHandler",
    "Subscription",
    "TopicPartition",
    "TopicSpec",
]
