"""Memory-bus specifics beyond the shared contract: bounded retention, redelivery, failures raised in tests."""

from __future__ import annotations

import asyncio

import pytest

from relaychain.bus import HandlerFailed, MemoryBus, Message, TopicSpec
from relaychain.bus.dispatch import Redelivery


async def test_what_every_group_committed_is_dropped() -> None:
    bus = MemoryBus(default_partitions=1)
    await bus.start()
    seen: list[bytes] = []

    async def handler(message: Message) -> None:
        seen.append(message.value)

    await bus.subscribe(["t"], group="a", handler=handler)
    for i in range(2000):
        await bus.publish("t", str(i).encode(), key="k")
    await bus.run_until_idle()
    assert len(seen) == 2000
    assert len(bus.messages("t")) < 256
    late: list[bytes] = []

    async def late_handler(message: Message) -> None:
        late.append(message.value)

    await bus.subscribe(["t"], group="late", handler=late_handler)
    await bus.publish("t", b"after", key="k")
    await bus.run_until_idle()
    assert late[-1] == b"after" and b"0" not in late
    await bus.stop()


async def test_an_unread_topic_keeps_its_newest_messages() -> None:
    bus = MemoryBus(retention=100)
    await bus.start()
    await bus.create_topics([TopicSpec("deadletters", partitions=1)])
    for i in range(250):
        await bus.publish("deadletters", str(i).encode())
    held = [m.value for m in bus.messages("deadletters")]
    assert held == [str(i).encode() for i in range(150, 250)]
    assert next(m.offset for m in bus.messages("deadletters")) == 150
    await bus.stop()


async def test_retention_holds_for_any_key_distribution() -> None:
    """Acknowledgements across many keys arrive out of order; trimming must not depend on where they land."""
    bus = MemoryBus(default_partitions=4)
    await bus.start()
    handled = 0

    async def handler(message: Message) -> None:
        nonlocal handled
        handled += 1
        if handled % 7 == 0:
            await asyncio.sleep(0)

    await bus.subscribe(["t"], group="a", handler=handler, max_in_flight=64)
    for i in range(100_000):
        await bus.publish("t", b"x", key=f"k{i % 1000}")
        if i % 5000 == 4999:
            await bus.run_until_idle()
            assert bus.retained() < 4 * 600
    await bus.run_until_idle()
    assert handled == 100_000
    assert bus.retained() < 4 * 600
    await bus.stop()


async def test_a_message_whose_handler_raised_is_redelivered() -> None:
    bus = MemoryBus(redelivery=Redelivery(max_deliveries=3, base_delay_s=0.001))
    await bus.start()
    deliveries: list[int] = []

    async def flaky(message: Message) -> None:
        deliveries.append(message.delivery)
        if message.delivery == 1:
            raise RuntimeError("once")

    await bus.subscribe(["t"], group="a", handler=flaky)
    await bus.publish("t", b"x", key="k")
    await bus.run_until_idle()
    assert deliveries == [1, 2]
    await bus.stop()


async def test_run_until_idle_raises_what_failed_every_delivery_and_the_group_moves_on() -> None:
    bus = MemoryBus(redelivery=Redelivery(max_deliveries=3, base_delay_s=0.001))
    await bus.start()
    handled: list[bytes] = []

    async def broken_on_bad(message: Message) -> None:
        if message.value == b"bad":
            raise ValueError("cannot handle this")
        handled.append(message.value)

    await bus.subscribe(["t"], group="a", handler=broken_on_bad)
    await bus.publish("t", b"bad", key="k")
    await bus.publish("t", b"good", key="k")
    with pytest.raises(HandlerFailed, match="all 3 deliveries") as caught:
        await bus.run_until_idle(timeout=5)
    assert isinstance(caught.value.__cause__, ValueError)
    await bus.run_until_idle(timeout=5)
    assert handled == [b"good"]
    await bus.stop()
