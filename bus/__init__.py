"""The bus: one small interface, an in-memory and a Kafka backend, and the runtime that hosts agents."""

from relaychain.bus.base import (
    Bus,
    BusError,
    Message,
    MessageHandler,
    StartStop,
    Subscription,
    TopicPartition,
    TopicSpec,
)
from relaychain.bus.memory import HandlerFailed, MemoryBus

__all__ = [
    "Bus",
    "BusError",
    "HandlerFailed",
    "MemoryBus",
    "Message",
    "MessageHandler",
    "StartStop",
    "Subscription",
    "TopicPartition",
    "TopicSpec",
]
