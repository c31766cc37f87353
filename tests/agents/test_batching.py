"""Group commit: calls waiting behind a running write go together, each caller gets its own answer or the failure."""

from __future__ import annotations

import asyncio

import pytest

from relaychain.agents.stores.batching import Batched


class Recorder:
    """Runs batches, holding each until released, so a test decides what queues behind it."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self._fail_on = fail_on

    async def run(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.release.wait()
        if self._fail_on in items:
            raise RuntimeError(f"cannot write {self._fail_on}")
        return [item * 10 for item in items]


async def started(recorder: Recorder, count: int) -> None:
    while len(recorder.batches) < count:
        await asyncio.sleep(0)


async def test_calls_queued_behind_a_running_batch_go_together_and_get_their_own_answers() -> None:
    recorder = Recorder()
    batched = Batched(recorder.run)
    first = asyncio.create_task(batched(1))
    await started(recorder, 1)
    rest = [asyncio.create_task(batched(n)) for n in (2, 3, 4)]
    recorder.release.set()
    assert await asyncio.gather(first, *rest) == [10, 20, 30, 40]
    assert recorder.batches == [[1], [2, 3, 4]]


async def test_a_failure_reaches_every_caller_of_its_batch_only() -> None:
    recorder = Recorder(fail_on=3)
    batched = Batched(recorder.run)
    first = asyncio.create_task(batched(1))
    await started(recorder, 1)
    second = [asyncio.create_task(batched(n)) for n in (2, 3)]
    recorder.release.set()
    assert await first == 10
    for task in second:
        with pytest.raises(RuntimeError, match="cannot write 3"):
            await task
    assert await batched(5) == 50, "the next batch runs after a failed one"


async def test_a_cancelled_caller_does_not_strand_the_others() -> None:
    recorder = Recorder()
    batched = Batched(recorder.run)
    leader = asyncio.create_task(batched(1))
    await started(recorder, 1)
    follower = asyncio.create_task(batched(2))
    await asyncio.sleep(0)
    leader.cancel()
    recorder.release.set()
    assert await follower == 20
    assert recorder.batches == [[1], [2]], "the cancelled caller's row was still written: writes are idempotent"


async def test_batches_are_bounded() -> None:
    recorder = Recorder()
    recorder.release.set()
    batched = Batched(recorder.run, max_batch=2)
    assert await asyncio.gather(*(batched(n) for n in range(5))) == [0, 10, 20, 30, 40]
    assert recorder.batches == [[0, 1], [2, 3], [4]]
