"""Memory-bus specifics beyond the shared contract: bounded retention."""

from __future__ import annotations

from relaychain.bus import MemoryBus, Message, TopicSpec


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
