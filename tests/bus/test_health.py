from __future__ import annotations

import asyncio

from relaychain.bus.health import HealthServer


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
