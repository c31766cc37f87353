"""settle: gather's results and concurrency, in the calling task."""

from __future__ import annotations

import asyncio

import pytest

from relaychain.bus.together import settle


async def test_results_and_exceptions_come_back_in_order() -> None:
    async def value(v: int) -> int:
        return v

    async def fails() -> int:
        raise ValueError("no")

    async def waits(v: int) -> int:
        await asyncio.sleep(0)
        return v

    results = await settle([value(1), fails(), waits(3), value(4)])
    assert results[0] == 1 and isinstance(results[1], ValueError) and results[2:] == [3, 4]


async def test_coroutines_that_never_wait_run_in_the_calling_task() -> None:
    tasks = len(asyncio.all_tasks())

    async def publish(index: int) -> int:
        assert len(asyncio.all_tasks()) == tasks
        return index

    assert await settle([publish(0), publish(1)]) == [0, 1]


async def test_every_coroutine_starts_before_any_acknowledgement_is_waited_for() -> None:
    loop = asyncio.get_running_loop()
    acks = [loop.create_future() for _ in range(3)]
    started: list[int] = []

    async def publish(index: int) -> int:
        started.append(index)
        return await acks[index]

    async def acknowledge_when_all_started() -> None:
        while len(started) < 3:
            await asyncio.sleep(0)
        for index, ack in reversed(list(enumerate(acks))):  # acknowledged together, last first
            ack.set_result(index * 10)

    acknowledger = asyncio.create_task(acknowledge_when_all_started())
    assert await settle([publish(0), publish(1), publish(2)]) == [0, 10, 20]
    assert started == [0, 1, 2]
    await acknowledger


async def test_a_failure_after_waiting_is_a_result_and_the_rest_still_finish() -> None:
    loop = asyncio.get_running_loop()
    ack = loop.create_future()

    async def refused() -> int:
        await ack
        raise ConnectionError("broker said no")

    async def accepted() -> int:
        await ack
        return 2

    loop.call_soon(ack.set_result, None)
    results = await settle([refused(), accepted()])
    assert isinstance(results[0], ConnectionError) and results[1] == 2


async def test_cancelling_the_caller_closes_what_still_waits() -> None:
    never = asyncio.get_running_loop().create_future()
    cleaned: list[int] = []

    async def waits_forever(index: int) -> None:
        try:
            await never
        finally:
            cleaned.append(index)

    caller = asyncio.create_task(settle([waits_forever(0), waits_forever(1)]))
    for _ in range(3):
        await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert sorted(cleaned) == [0, 1]


async def test_awaitables_that_are_not_coroutines_are_awaited_too() -> None:
    future = asyncio.get_running_loop().create_future()
    future.set_result("done")
    assert await settle([future]) == ["done"]
