"""Token deltas while a model generates.

The generator hands a `DeltaStream` to the model as its `on_delta`. The
stream batches pieces (every `interval_s`, or sooner at `max_pieces`) into
`TokenDelta` events and sends them in order from one task, so a slow
publish never blocks generation. Deltas are best-effort: a failed publish
is counted and dropped, and the formatter's answer stays authoritative.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from relaychain.schemas import Event, Job, TokenDelta

__all__ = ["DeltaPublisher", "DeltaStream"]

log = logging.getLogger(__name__)

Emit = Callable[[Event], Awaitable[None]]


class DeltaStream:
    """One step's token callback: buffers pieces and publishes them as `TokenDelta`s, in order."""

    def __init__(self, job: Job, step: str, emit: Emit, *, interval_s: float, max_pieces: int) -> None:
        self._job = job
        self._step = step
        self._emit = emit
        self._interval_s = interval_s
        self._max_pieces = max_pieces
        self._buffer: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._outbox: asyncio.Queue[TokenDelta | None] = asyncio.Queue()
        self._sender = asyncio.create_task(self._send_all())
        self._index = 0

    async def __call__(self, piece: str) -> None:
        self._buffer.append(piece)
        if len(self._buffer) >= self._max_pieces:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval_s, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer:
            return
        delta = self._job.reply(
            TokenDelta, step=self._step, index=self._index, text="".join(self._buffer), tokens=len(self._buffer)
        )
        self._buffer.clear()
        self._index += 1
        self._outbox.put_nowait(delta)

    async def _send_all(self) -> None:
        while (delta := await self._outbox.get()) is not None:
            try:
                await self._emit(delta)
            except Exception as exc:  # best-effort channel: the answer does not depend on it
                log.warning("token delta %d of request %s not published: %r", delta.index, delta.request_id, exc)

    async def close(self) -> None:
        """Send what is buffered and wait until every delta has been handed to the bus."""
        self._flush()
        self._outbox.put_nowait(None)
        await self._sender


class DeltaPublisher:
    """Opens a `DeltaStream` per streaming generate step; `emit` is the runtime's publish."""

    def __init__(self, emit: Emit, *, interval_s: float = 0.05, max_pieces: int = 32) -> None:
        self._emit = emit
        self._interval_s = interval_s
        self._max_pieces = max_pieces

    def open(self, job: Job, step: str) -> DeltaStream:
        return DeltaStream(job, step, self._emit, interval_s=self._interval_s, max_pieces=self._max_pieces)
