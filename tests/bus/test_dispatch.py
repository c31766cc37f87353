"""KeyedDispatcher on revoke: what is dropped, what is kept, how long to wait."""

from __future__ import annotations

import asyncio

from relaychain.bus import Message, TopicPartition
from relaychain.bus.dispatch import KeyedDispatcher, Redelivery

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


def message(partition: int, offset: int, key: str) -> Message:
    return Message("t", str(offset).encode(), key, {}, partition, offset)


async def test_drop_keeps_running_heads_and_drops_everything_not_started() -> None:
    release = asyncio.Event()
    started: list[int] = []
    done: list[int] = []

    async def handler(m: Message) -> None:
        started.append(m.offset or 0)
        await release.wait()

    dispatcher = KeyedDispatcher(
        handler, max_in_flight=10, on_done=lambda m: done.append(m.offset or 0), on_failed=_unexpected
    )
    await dispatcher.submit(message(0, 0, "a"))
    await dispatcher.submit(message(0, 1, "a"))
    await asyncio.sleep(0)  # lane "a" starts offset 0
    await dispatcher.submit(message(0, 2, "b"))  # a lane head whose task has not run yet
    await dispatcher.submit(message(1, 3, "a"))  # queued behind, on a partition we keep
    assert started == [0] and dispatcher.in_flight == 4

    dispatcher.drop_partitions([P0])
    assert dispatcher.in_flight == 2 and dispatcher.unfinished_in([P0]) == 1
    release.set()
    assert await dispatcher.wait_for_partitions([P0], timeout=1.0)
    assert await dispatcher.drain(1.0)
    assert started == [0, 3] and done == [0, 3]


async def test_wait_for_partitions_gives_up_after_timeout_without_cancelling() -> None:
    release = asyncio.Event()
    done: list[int] = []

    async def handler(m: Message) -> None:
        await release.wait()

    dispatcher = KeyedDispatcher(
        handler, max_in_flight=2, on_done=lambda m: done.append(m.offset or 0), on_failed=_unexpected
    )
    await dispatcher.submit(message(0, 0, "a"))
    await asyncio.sleep(0)
    assert not await dispatcher.wait_for_partitions([P0], timeout=0.05)
    assert await dispatcher.wait_for_partitions([P1], timeout=0.05)
    release.set()
    assert await dispatcher.wait_for_partitions([P0], timeout=1.0)
    assert done == [0]


def _unexpected(message: Message, exc: Exception) -> None:
    raise AssertionError(f"no handler should fail here: {exc!r}")


async def test_a_raising_handler_gets_its_message_again_then_on_failed() -> None:
    deliveries: list[int] = []
    done: list[int] = []
    failed: list[tuple[int, str]] = []

    async def handler(m: Message) -> None:
        deliveries.append(m.delivery)
        if m.offset == 0 and m.delivery < 2:
            raise RuntimeError("once")
        if m.offset == 1:
            raise RuntimeError("always")

    dispatcher = KeyedDispatcher(
        handler,
        max_in_flight=4,
        on_done=lambda m: done.append(m.offset or 0),
        on_failed=lambda m, exc: failed.append((m.offset or 0, str(exc))),
        redelivery=Redelivery(max_deliveries=3, base_delay_s=0.001),
    )
    await dispatcher.submit(Message("t", b"", key="a", partition=0, offset=0))
    await dispatcher.submit(Message("t", b"", key="b", partition=0, offset=1))
    assert await dispatcher.drain(5)
    assert done == [0]
    assert failed == [(1, "always")]
    assert sorted(deliveries) == [1, 1, 2, 2, 3]
