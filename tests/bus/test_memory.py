"""Memory-bus specifics beyond the shared contract: bounded retention, redelivery, failures raised in tests."""

from __future__ import annotations

import asyncio
import contextvars

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


async def test_a_full_member_takes_later_messages_in_log_order_and_never_more_than_max_in_flight() -> None:
    # A publish hands a message straight to a member with a free slot; with every slot taken it is left to the
    # fetch loop, and the direct path must not overtake what the fetch loop has not handed over yet.
    bus = MemoryBus(default_partitions=1)
    await bus.start()
    release = asyncio.Event()
    handled: list[bytes] = []
    running = 0
    most = 0

    async def slow(message: Message) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        handled.append(message.value)
        running -= 1

    await bus.subscribe(["t"], group="a", handler=slow, max_in_flight=2)
    sent = [f"{key}{i}".encode() for i in range(5) for key in "abc"]
    for value in sent:
        await bus.publish("t", value, key=value[:1].decode())
    release.set()
    await bus.run_until_idle(timeout=5)
    assert most <= 2
    assert sorted(handled) == sorted(sent)
    for key in "abc":
        assert [v for v in handled if v.startswith(key.encode())] == [v for v in sent if v.startswith(key.encode())]
    await bus.stop()


_PUBLISHER = contextvars.ContextVar("publisher", default="none")


async def test_a_handler_never_sees_the_publishers_context() -> None:
    bus = MemoryBus()
    await bus.start()
    seen: list[str] = []

    async def handler(message: Message) -> None:
        seen.append(_PUBLISHER.get())
        _PUBLISHER.set("handler")

    await bus.subscribe(["t"], group="a", handler=handler)
    _PUBLISHER.set("publisher")
    await bus.publish("t", b"1", key="k")
    await bus.publish("t", b"2", key="j")
    await bus.run_until_idle()
    assert seen == ["none", "none"]
    assert _PUBLISHER.get() == "publisher"
    await bus.stop()
