"""KeyedDispatcher: slots and their order, what a revoke drops and keeps, how long to wait; OffsetTracker's commit point."""

from __future__ import annotations

import asyncio

from relaychain.bus import Message, TopicPartition
from relaychain.bus.dispatch import KeyedDispatcher, OffsetTracker, Redelivery

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


def message(partition: int, offset: int, key: str) -> Message:
    return Message("t", str(offset).encode(), key, {}, partition, offset)


def test_commit_point_moves_over_contiguous_acknowledged_offsets_only() -> None:
    tracker = OffsetTracker()
    tracker.start(P0, 10)
    for offset in (10, 11, 12, 14, 15):  # 13 is a gap in the log (e.g. a transaction marker): never fetched
        tracker.fetched(P0, offset)
    tracker.acked(P0, 12)
    tracker.acked(P0, 11)
    assert tracker.commit_point(P0) == 10  # 10 is unfinished: nothing after it counts yet
    tracker.acked(P0, 10)
    assert tracker.commit_point(P0) == 13
    tracker.acked(P0, 15)
    assert tracker.commit_point(P0) == 13
    tracker.acked(P0, 14)
    assert tracker.commit_point(P0) == 16


def test_acks_of_older_copies_and_untracked_partitions_move_nothing() -> None:
    tracker = OffsetTracker()
    tracker.start(P0, 0)
    for offset in range(3):
        tracker.fetched(P0, offset)
    tracker.acked(P0, 0)
    tracker.acked(P0, 0)  # a redelivered copy acknowledged again
    tracker.acked(P1, 1)  # revoked: no longer tracked
    assert tracker.commit_point(P0) == 1
    assert tracker.commit_point(P1) is None
    tracker.acked(P0, 2)
    tracker.acked(P0, 1)
    assert tracker.commit_point(P0) == 3
    tracker.acked(P0, 1)  # below the commit point, nothing pending: still nothing moves
    tracker.fetched(P0, 3)
    assert tracker.commit_point(P0) == 3
    tracker.acked(P0, 3)
    assert tracker.commit_point(P0) == 4


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


async def test_offer_takes_free_slots_only_and_never_overtakes_a_waiting_submit() -> None:
    release = asyncio.Event()
    handled: list[int] = []

    async def handler(m: Message) -> None:
        await release.wait()
        handled.append(m.offset or 0)

    dispatcher = KeyedDispatcher(handler, max_in_flight=2, on_done=lambda m: None, on_failed=_unexpected)
    assert dispatcher.offer(message(0, 0, "a")) and dispatcher.offer(message(0, 1, "b"))
    assert not dispatcher.offer(message(0, 2, "a")) and dispatcher.in_flight == 2
    waiting = asyncio.create_task(dispatcher.submit(message(0, 2, "a")))
    await asyncio.sleep(0)
    assert not waiting.done()
    release.set()
    await asyncio.sleep(0)  # both handlers finish: one slot goes to the waiting submit, one is free
    # The waiting submit has been handed its slot but not run yet: an offer must not queue ahead of it.
    assert not dispatcher.has_room and not dispatcher.offer(message(0, 3, "a"))
    await waiting
    assert dispatcher.offer(message(0, 3, "a"))
    assert await dispatcher.drain(1.0)
    assert handled == [0, 1, 2, 3] and dispatcher.in_flight == 0


async def test_a_submit_cancelled_after_it_was_handed_a_slot_passes_the_slot_on() -> None:
    release = asyncio.Event()

    async def handler(m: Message) -> None:
        await release.wait()

    dispatcher = KeyedDispatcher(handler, max_in_flight=1, on_done=lambda m: None, on_failed=_unexpected)
    await dispatcher.submit(message(0, 0, "a"))
    first = asyncio.create_task(dispatcher.submit(message(0, 1, "b")))
    second = asyncio.create_task(dispatcher.submit(message(0, 2, "c")))
    await asyncio.sleep(0)
    release.set()
    await asyncio.sleep(0)  # the handler returns; its slot is handed to `first`, which has not run yet
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1.0)  # a slot lost with `first` would leave it waiting for ever
    assert await dispatcher.drain(1.0)
    assert dispatcher.in_flight == 0 and dispatcher.has_room
