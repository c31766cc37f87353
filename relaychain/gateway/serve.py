"""Run the gateway under uvicorn until SIGTERM/SIGINT."""

from __future__ import annotations

import socket

import uvicorn

from relaychain.gateway.app import create_app
from relaychain.gateway.host import GatewayHost


async def serve(host: GatewayHost, *, bind: str, port: int, sock: socket.socket | None = None) -> None:
    async with host:
        config = uvicorn.Config(
            create_app(host),
            host=bind,
            port=port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=5,
            timeout_keep_alive=30,
        )
        server = uvicorn.Server(config)
        await server.serve(sockets=[sock] if sock is not None else None)
