"""Liveness and readiness over HTTP for Kubernetes probes: `GET /livez`, `GET /readyz`.

A few lines of asyncio instead of a web framework: probes need a status
code, nothing else, and a worker should not pull in a server stack for it.

Liveness includes a loop-lag monitor: a task that sleeps `interval_s` and
measures how late it wakes. A loop blocked by synchronous work (a model run
on the loop's thread) cannot answer the probe in time anyway; the lag seen
once it answers says it was stuck, and the kubelet restarts the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

_REASONS = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}


class LoopLagMonitor:
    """How late the event loop wakes a sleeping task; `healthy` while the worst recent lag is under the threshold."""

    def __init__(self, *, threshold_s: float = 5.0, interval_s: float = 0.5) -> None:
        self.threshold_s = threshold_s
        self.interval_s = interval_s
        self.lag_s = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        return self.lag_s < self.threshold_s and (self._task is None or not self._task.done())

    def start(self) -> None:
        self._task = asyncio.create_task(self._measure(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            planned = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.lag_s = max(0.0, loop.time() - planned)


class HealthServer:
    """`/readyz` answers `ready()`; `/livez` answers `live()` and the loop-lag monitor's verdict."""

    def __init__(
        self,
        *,
        ready: Callable[[], bool],
        live: Callable[[], bool] = lambda: True,
        host: str = "0.0.0.0",
        port: int = 8080,
        loop_lag_threshold_s: float = 5.0,
    ) -> None:
        self._ready = ready
        self._live = live
        self.host = host
        self.port = port
        self.loop_lag = LoopLagMonitor(threshold_s=loop_lag_threshold_s)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.loop_lag.start()

    async def stop(self) -> None:
        await self.loop_lag.stop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def is_live(self) -> bool:
        return self.loop_lag.healthy and self._live()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else ""
            if path == "/livez":
                status = 200 if self.is_live() else 503
            elif path == "/readyz":
                status = 200 if self._ready() else 503
            else:
                status = 404
            body = _REASONS[status].lower().encode() + b"\n"
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
