from __future__ import annotations

import asyncio
import time

from relaychain.bus.health import HealthServer
from tests.support.waiting import eventually


async def get(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    writer.close()
    return status


async def test_liveness_and_readiness() -> None:
    ready = False
    server = HealthServer(ready=lambda: ready, host="127.0.0.1", port=0)
    await server.start()
    assert await get(server.port, "/livez") == 200
    assert await get(server.port, "/readyz") == 503
    ready = True
    assert await get(server.port, "/readyz") == 200
    assert await get(server.port, "/nope") == 404
    await server.stop()


async def test_liveness_fails_after_the_loop_was_blocked() -> None:
    server = HealthServer(ready=lambda: True, host="127.0.0.1", port=0, loop_lag_threshold_s=0.3)
    server.loop_lag.interval_s = 0.05
    await server.start()
    await eventually(lambda: server.loop_lag.lag_s == 0.0 or server.loop_lag.lag_s < 0.3)
    assert await get(server.port, "/livez") == 200
    time.sleep(0.5)  # a handler doing synchronous work on the loop's thread
    await eventually(lambda: server.loop_lag.lag_s >= 0.3)
    assert await get(server.port, "/livez") == 503
    await eventually(lambda: server.loop_lag.lag_s < 0.3)
    assert await get(server.port, "/livez") == 200
    await server.stop()


async def test_liveness_follows_the_runtime() -> None:
    live = True
    server = HealthServer(ready=lambda: True, live=lambda: live, host="127.0.0.1", port=0)
    await server.start()
    assert await get(server.port, "/livez") == 200
    live = False
    assert await get(server.port, "/livez") == 503
    await server.stop()
