"""Follow one request until its answer: deltas and progress as they come, then the answer, or a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from relaychain.gateway.hub import RequestHub, StreamItem
from relaychain.schemas import Event

KEEPALIVE_S = 15.0

Tick = Literal["keepalive", "timeout"]
Item = StreamItem | Event | Tick
"""A delta or progress; then the answer (an `Event`); `keepalive` while waiting, `timeout` last if no answer came."""


async def follow(
    hub: RequestHub,
    request_id: str,
    queue: asyncio.Queue[StreamItem],
    answer: asyncio.Future[Event],
    *,
    timeout_s: float,
    on_abandon: Callable[[], None],
) -> AsyncIterator[Item]:
    """Yields until the answer; a caller that stops iterating early (disconnect) triggers `on_abandon`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    finished = False
    try:
        while True:
            if answer.done():
                while not queue.empty():
                    yield queue.get_nowait()
                finished = True
                yield answer.result()
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                finished = True
                yield "timeout"
                return
            getter = asyncio.ensure_future(queue.get())
            waiting: set[asyncio.Future[Any]] = {getter, answer}  # two result types; each is read through its own name
            done, _ = await asyncio.wait(
                waiting, timeout=min(remaining, KEEPALIVE_S), return_when=asyncio.FIRST_COMPLETED
            )
            if getter in done:
                yield getter.result()
            else:
                getter.cancel()
                if not done:
                    yield "keepalive"
    finally:
        hub.unlisten(request_id, queue)
        if not finished:
            on_abandon()
