"""What the local engines share: one worker thread per model with a bounded queue, and the bridge of one call to it.

Inference blocks, so it runs on the model's own thread, never the event
loop's. The thread side of a call sees a plain `threading.Event` for
"stop now" (set from the request's `cancelled`, or when the awaiting task is
itself cancelled) and an `emit` that hands text back to the loop, where one
task awaits `on_delta` with each piece in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from relaychain.agents.llm.base import Completion, CompletionRequest, FinishReason, ModelBusy
from relaychain.schemas.config import Provider

__all__ = [
    "CallSide",
    "LocalResult",
    "ModelThread",
    "ProgressCallback",
    "bridge",
    "call_arguments",
    "complete_on_thread",
    "physical_cores",
    "wait_briefly",
]

ProgressCallback = Callable[[str], None]
"""Receives human-readable load progress (the CLI prints it); called from the model's worker thread."""


class ModelThread:
    """One model's worker thread. Past `max_queue` waiting or running calls, `submit` raises `ModelBusy` (back-pressure)."""

    def __init__(
        self,
        name: str,
        *,
        max_queue: int,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        self.name = name
        self._max_queue = max_queue
        self._queued = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"relaychain-model-{name}", initializer=initializer, initargs=initargs
        )

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        self._reserve()
        return self._start(fn, *args)

    def submit_soon(self, fn: Callable[..., Any]) -> None:
        """As `submit`, but the thread gets `fn` after the event loop's callbacks already due have run.

        Callers woken together (a burst of requests) then have all queued their
        work before the thread looks, so a batching engine sees them as one batch.
        """
        self._reserve()
        asyncio.get_running_loop().call_soon(self._start, fn)

    def _reserve(self) -> None:
        with self._lock:
            if self._queued >= self._max_queue:
                raise ModelBusy(self.name, self._queued)
            self._queued += 1

    def _start(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future = self._executor.submit(fn, *args)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._lock:
            self._queued -= 1


def physical_cores() -> int:
    """The physical cores this process may run on: a local engine's default thread count.

    Hyper-threads of one core share its vector units, so a second inference
    thread on a sibling only adds synchronisation; CPUs outside the process's
    affinity (taskset, a container's cpuset) would only be waited for.
    """
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in allowed:
        try:
            topology = f"/sys/devices/system/cpu/cpu{cpu}/topology"
            with open(f"{topology}/physical_package_id") as package, open(f"{topology}/core_id") as core:
                cores.add((package.read().strip(), core.read().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def wait_briefly() -> None:
    """Make OpenMP threads (llama.cpp's, torch's) spin briefly at a barrier, then sleep, unless the user chose.

    Spinning long burns the core a late partner needs: on a machine busy with
    other processes, a 2-thread prompt evaluation took twice the CPU and 1.6x
    the time of one whose threads sleep at once (`OMP_WAIT_POLICY=PASSIVE`).
    Sleeping at once is slow when the cores are free: waking a thread costs
    more than one decoded token's share of work, so two threads decoded at
    half the speed of one, and a prompt took 1.4x longer. A thousand spins
    (microseconds) cover the wait between operations of one token on an idle
    machine and give the core up fast on a busy one: measured on 2 cores, a
    273-token prompt took 0.78 s idle (passive: 1.12 s) and 1.75 s with a
    core busy (passive: 1.72 s). The OpenMP runtime reads this once, when it
    is loaded: call it before torch or llama.cpp is imported.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "1000")


@dataclass(frozen=True)
class CallSide:
    """One call as its model thread sees it."""

    stop: threading.Event
    emit: Callable[[str], None] | None


@contextlib.asynccontextmanager
async def bridge(request: CompletionRequest) -> AsyncIterator[CallSide]:
    """The thread side of `request` for the duration of the block; every delta is delivered before it exits."""
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    helpers: list[asyncio.Task[None]] = []
    if request.cancelled is not None:
        cancelled = request.cancelled

        async def watch() -> None:
            await cancelled.wait()
            stop.set()

        helpers.append(asyncio.create_task(watch()))
    emit: Callable[[str], None] | None = None
    pump: asyncio.Task[None] | None = None
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    if request.on_delta is not None:
        on_delta = request.on_delta

        async def deliver() -> None:
            while (text := await queue.get()) is not None:
                await on_delta(text)

        pump = asyncio.create_task(deliver())

        def emit(text: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, text)

    try:
        yield CallSide(stop, emit)
        if pump is not None:
            # The thread's last emits were queued on the loop before its result was: all are in the queue now.
            queue.put_nowait(None)
            await pump
    except BaseException:
        # Whoever awaited the call is gone (or it failed): the thread stops at its next token, not at the limit.
        stop.set()
        if pump is not None:
            pump.cancel()
        raise
    finally:
        for helper in helpers:
            helper.cancel()


@dataclass(frozen=True)
class LocalResult:
    """What a local engine's thread hands back for one call."""

    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: FinishReason
    cached_input_tokens: int = 0


def call_arguments(request: CompletionRequest, default_timeout_s: float) -> dict[str, Any]:
    """The fields of a local engine's call, taken from the request the same way by every engine."""
    return {
        "messages": [m.model_dump(include={"role", "content"}) for m in request.messages],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "timeout_s": request.timeout_s or default_timeout_s,
        "json_schema": request.json_schema,
    }


async def complete_on_thread(
    name: str, provider: Provider, request: CompletionRequest, run: Callable[[CallSide], Future[LocalResult]]
) -> Completion:
    """`run(side)` submits the call to the model's thread; this bridges it and turns the result into a Completion."""
    started = time.perf_counter()
    async with bridge(request) as side:
        result = await asyncio.wrap_future(run(side))
    return Completion(
        text=result.text,
        model=name,
        response_model=name,
        provider=provider.value,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        finish_reason=result.finish_reason,
        latency_ms=(time.perf_counter() - started) * 1000,
        cached_input_tokens=result.cached_input_tokens,
    )
