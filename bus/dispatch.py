"""What both backends share between fetching and committing.

`OffsetTracker` knows, per partition, which fetched offsets are acknowledged
and therefore how far it is safe to commit. `KeyedDispatcher` runs handlers
concurrently across keys, one at a time per key in arrival order, and blocks
`submit` while `max_in_flight` messages are unfinished (backpressure).

A handler that raises gets its message again (same lane, so later messages of
the key wait behind it), after a jittered backoff, up to
`Redelivery.max_deliveries` times; then the backend's `on_failed` decides
what happens, so no failure ends as a log line with the message left behind.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from relaychain.bus.base import Message, MessageHandler, TopicPartition

log = logging.getLogger(__name__)


class OffsetTracker:
    """Per partition: the next offset that is safe to commit.

    Acknowledgements can arrive out of order (different keys run
    concurrently); the commit point only moves over a contiguous run of
    acknowledged offsets, so a crash never skips an unfinished message.
    """

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, deque[int]] = {}
        self._acked: dict[TopicPartition, set[int]] = {}
        self._commit_point: dict[TopicPartition, int] = {}

    def start(self, tp: TopicPartition, position: int) -> None:
        self._pending[tp] = deque()
        self._acked[tp] = set()
        self._commit_point[tp] = position

    def forget(self, tp: TopicPartition) -> None:
        self._pending.pop(tp, None)
        self._acked.pop(tp, None)
        self._commit_point.pop(tp, None)

    def fetched(self, tp: TopicPartition, offset: int) -> None:
        self._pending[tp].append(offset)

    def acked(self, tp: TopicPartition, offset: int) -> None:
        """Acknowledge a fetched offset; one of an untracked (revoked) partition or below the commit point
        (an older copy of something committed) changes nothing."""
        pending = self._pending.get(tp)
        if not pending or offset < pending[0]:
            return
        acked = self._acked[tp]
        if offset != pending[0]:
            # Ahead of an unfinished one: it waits in the set until the run before it is acknowledged.
            acked.add(offset)
            return
        # Most acknowledgements are of the oldest pending offset: no set insertion for those.
        pending.popleft()
        point = offset + 1
        while acked and pending and pending[0] in acked:
            point = pending.popleft()
            acked.discard(point)
            point += 1
        self._commit_point[tp] = point

    def commit_point(self, tp: TopicPartition) -> int | None:
        return self._commit_point.get(tp)

    def commit_points(self) -> dict[TopicPartition, int]:
        return dict(self._commit_point)


@dataclass(frozen=True)
class Redelivery:
    """How often a message whose handler raised is handed over again, and how long to wait in between."""

    max_deliveries: int = 3
    base_delay_s: float = 0.05
    max_delay_s: float = 5.0

    def delay(self, delivery: int) -> float:
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**delivery))


DEFAULT_REDELIVERY = Redelivery()


class KeyedDispatcher:
    """Runs `handler` per message: sequential per key, concurrent across keys, bounded.

    `on_done` acknowledges a handled message; `on_failed` receives one whose
    every delivery raised (the backend records it and acknowledges it, or
    stops consuming so the partition is redelivered from its commit point).
    """

    def __init__(
        self,
        handler: MessageHandler,
        *,
        max_in_flight: int,
        on_done: Callable[[Message], None],
        on_failed: Callable[[Message, Exception], None],
        redelivery: Redelivery = DEFAULT_REDELIVERY,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._handler = handler
        self._on_done = on_done
        self._on_failed = on_failed
        self._redelivery = redelivery
        self._max_in_flight = max_in_flight
        # Submits waiting for a slot, first come first served; `_release` hands a freed slot to the first.
        self._waiters: deque[asyncio.Future[None]] = deque()
        # Submits waiting or woken and not yet run; while there are any, a free slot is theirs (see `has_room`).
        self._blocked = 0
        self._lanes: dict[str | None, deque[Message]] = {}
        # Lanes whose head message is inside the handler right now; other heads have not started.
        self._running: set[str | None] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def has_room(self) -> bool:
        """A `submit` now would not wait: a slot is free and no earlier `submit` is queued for one."""
        return self._in_flight < self._max_in_flight and not self._blocked

    def offer(self, message: Message, context: contextvars.Context | None = None) -> bool:
        """`submit` without waiting: queue `message` if `has_room`, else queue nothing and return False.

        A fetch loop offers a whole batch in one go and awaits `submit` only for the message that
        finds no slot: no coroutine per message."""
        if not self.has_room:
            return False
        self._in_flight += 1
        self._queue(message, context)
        return True

    async def submit(self, message: Message, context: contextvars.Context | None = None) -> None:
        """Queue `message` on its key's lane; a new lane's task runs in `context` (default: a copy of the caller's)."""
        if self.has_room:
            self._in_flight += 1
        else:
            await self._wait_for_slot()
        self._queue(message, context)

    async def _wait_for_slot(self) -> None:
        """Return owning a slot (`_release` counted it in `_in_flight` for us)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._blocked += 1
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed a slot and cancelled before using it: the slot goes on to the next one.
                self._release()
            raise
        finally:
            self._blocked -= 1

    def _queue(self, message: Message, context: contextvars.Context | None) -> None:
        self._idle.clear()
        lane_key = message.key if message.key is not None else f"\0{message.partition}:{message.offset}"
        lane = self._lanes.get(lane_key)
        if lane is not None:
            lane.append(message)
            return
        self._lanes[lane_key] = deque((message,))
        # The lane drops its own task when it ends: a done callback would cost one more loop callback per message.
        self._tasks.add(asyncio.create_task(self._run_lane(lane_key), context=context))

    async def _run_lane(self, lane_key: str | None) -> None:
        lane = self._lanes[lane_key]
        handler = self._handler
        try:
            while lane:
                message = lane[0]
                self._running.add(lane_key)
                try:
                    # The first delivery is called here, not through a coroutine of its own: most succeed.
                    await handler(message)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await self._redeliver(message, exc)
                else:
                    self._on_done(message)
                finally:
                    self._running.discard(lane_key)
                lane.popleft()
                self._release()
        finally:
            self._tasks.discard(asyncio.current_task())
            self._running.discard(lane_key)
            if self._lanes.get(lane_key) is lane:
                del self._lanes[lane_key]
            for _ in lane:
                self._release()
            lane.clear()

    async def _redeliver(self, message: Message, exc: Exception) -> None:
        """Hand `message`, whose handler just raised `exc`, over again until it succeeds or runs out of deliveries."""
        while True:
            if message.delivery >= self._redelivery.max_deliveries:
                self._on_failed(message, exc)
                return
            log.warning(
                "handler raised on %s[%s]@%s (delivery %d), redelivering: %r",
                message.topic,
                message.partition,
                message.offset,
                message.delivery,
                exc,
            )
            await asyncio.sleep(self._redelivery.delay(message.delivery))
            message = dataclasses.replace(message, delivery=message.delivery + 1)
            try:
                await self._handler(message)
            except asyncio.CancelledError:
                raise
            except Exception as again:
                exc = again
            else:
                self._on_done(message)
                return

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                # The slot passes straight to the longest-waiting submit; `_in_flight` stays as it is.
                waiter.set_result(None)
                return
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    def drop_partitions(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget queued (not yet started) messages of revoked partitions; they will be redelivered.

        A lane head whose handler has not started yet is dropped too: its task
        finds the lane empty (or continues with what is left) and exits.
        """
        gone = set(partitions)
        for lane_key, lane in self._lanes.items():
            running = lane_key in self._running
            keep = [m for i, m in enumerate(lane) if (i == 0 and running) or _partition_of(m) not in gone]
            dropped = len(lane) - len(keep)
            if dropped:
                lane.clear()
                lane.extend(keep)
                for _ in range(dropped):
                    self._release()

    def unfinished_in(self, partitions: Iterable[TopicPartition]) -> int:
        """Messages of `partitions` that are queued or being handled."""
        wanted = set(partitions)
        return sum(1 for lane in self._lanes.values() for m in lane if _partition_of(m) in wanted)

    async def wait_for_partitions(self, partitions: Iterable[TopicPartition], timeout: float) -> bool:
        """Wait until no message of `partitions` is queued or running; False after `timeout` (nothing cancelled)."""
        wanted = frozenset(partitions)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Polling keeps the hot path free of per-partition bookkeeping; this runs only on rebalances.
        while self.unfinished_in(wanted):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def drain(self, timeout: float) -> bool:
        """Wait for in-flight work; cancel what is left after `timeout`. True if all finished."""
        if self._in_flight == 0:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            tasks, self._tasks = self._tasks, set()
            for task in tasks:
                task.cancel()
            # A task cancelled before its first step never reaches its `finally`; the set is dropped whole.
            await asyncio.gather(*tasks, return_exceptions=True)
            return False


def _partition_of(message: Message) -> TopicPartition:
    return TopicPartition(message.topic, message.partition or 0)
