"""Run the gateway under uvicorn until SIGTERM/SIGINT."""

from __future__ import annotations

import socket

import uvicorn

from relaychain.gateway.app import create_app
from relaychain.gateway.host import GatewayHost


def listening_socket(bind: str, port: int) -> socket.socket:
    """A TCP socket with Nagle off: a response's head and body in separate writes would wait ~40 ms for an ACK.

    Accepted connections inherit TCP_NODELAY from it (Linux, BSD).
    """
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((bind, port))
    return sock


async def serve(host: GatewayHost, *, bind: str, port: int, sock: socket.socket | None = None) -> None:
    sock = sock or listening_socket(bind, port)
    async with host:
        config = uvicorn.Config(
            create_app(host),
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=5,
            timeout_keep_alive=30,
        )
        await uvicorn.Server(config).serve(sockets=[sock])
