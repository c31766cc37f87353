"""Bus choice by URL: `memory://` in-process, `kafka://host:port[,host:port][?option=value]` on a broker."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from relaychain.bus.base import Bus
from relaychain.bus.memory import MemoryBus


class BusUrlError(ValueError):
    """A bus URL that names no bus, or a Kafka URL with unusable options."""


def make_bus(url: str, *, kafka_options: dict[str, Any] | None = None) -> Bus:
    if url.startswith("memory://"):
        return MemoryBus()
    if url.startswith("kafka://"):
        from relaychain.bus.kafka import KafkaBus, KafkaSettings

        try:
            # Validated, not `model_copy(update=...)`: options from the environment arrive as strings.
            settings = KafkaSettings.from_url(url, **(kafka_options or {}))
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise BusUrlError(f"bad bus URL {url!r}: {detail}") from None
        except ValueError as exc:
            raise BusUrlError(f"bad bus URL {url!r}: {exc}") from None
        return KafkaBus(settings)
    raise BusUrlError(f"unsupported bus URL {url!r}: use memory:// or kafka://host:port")
