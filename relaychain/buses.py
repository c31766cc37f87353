"""Bus choice by URL: `memory://` in-process, `kafka://host:port[,host:port][?option=value]` on a broker."""

from __future__ import annotations

from typing import Any

from relaychain.bus.base import Bus
from relaychain.bus.memory import MemoryBus


def make_bus(url: str, *, kafka_options: dict[str, Any] | None = None) -> Bus:
    if url.startswith("memory://"):
        return MemoryBus()
    if url.startswith("kafka://"):
        from relaychain.bus.kafka import KafkaBus, KafkaSettings

        # Validated, not `model_copy(update=...)`: options from the environment arrive as strings.
        return KafkaBus(KafkaSettings.from_url(url, **(kafka_options or {})))
    raise ValueError(f"unsupported bus URL {url!r}: use memory:// or kafka://host:port")
