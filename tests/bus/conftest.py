"""The same contract suite runs on every backend: `bus_factory` yields started buses of one kind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from relaychain.bus import Bus, MemoryBus

BusFactory = Callable[[], Awaitable[Bus]]


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
async def bus_factory(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """Several buses of one backend share a broker (memory: one MemoryBus instance behind them)."""
    created: list[Bus] = []
    if request.param == "memory":
        shared = MemoryBus(default_partitions=4)
        await shared.start()

        async def make() -> Bus:
            return shared

        yield make
        await shared.stop()
        return

    from relaychain.bus.kafka import KafkaBus, KafkaSettings
    from tests.support.tansu import fast_group_timing

    bootstrap = request.getfixturevalue("kafka_bootstrap")

    async def make_kafka() -> Bus:
        bus = KafkaBus(
            KafkaSettings(
                bootstrap_servers=bootstrap, default_partitions=4, commit_interval_s=0.2, **fast_group_timing()
            )
        )
        await bus.start()
        created.append(bus)
        return bus

    yield make_kafka
    for bus in created:
        await bus.stop()


@pytest.fixture
def names() -> Callable[[str], str]:
    """Unique topic and group names per test, so tests sharing one broker never see each other's data."""
    suffix = uuid.uuid4().hex[:8]
    return lambda base: f"t.{base}.{suffix}"
