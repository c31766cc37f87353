"""Bus choice by URL: `memory://` in-process, `kafka://host:port[,host:port][?option=value]` on a broker."""

from __future__ import annotations

from typing import Any

from bus.base import Bus
from bus.memory import MemoryBus


def make_bus(url: str, *, kafka_options: dict[str, Any] | None = None) -> Bus:
    if url.startswith("memory://"):
        return MemoryBus()
    if url.startswith("kafka://"):
        from bus.kafka import KafkaBus, KafkaSettings

        settings = KafkaSettings.from_url(url)
        if kafka_options:
            settings = settings.model_copy(update=kafka_options)
        return KafkaBus(settings)
    raise ValueError(f"unsupported bus URL {url!r}: use memory:// or kafka://host:port")
