"""`phoenix serve` with its OTLP gRPC receiver bound to 127.0.0.1 instead of every interface.

Run by the Phoenix environment's own Python, never imported by relaychain:

    PHOENIX_HOST=127.0.0.1 PHOENIX_PORT=6006 PHOENIX_GRPC_PORT=4317 \\
        .ci-state/phoenix-venv/bin/python -I tests/support/phoenix_serve.py

Phoenix binds HTTP to `PHOENIX_HOST`, but its gRPC receiver
(`phoenix/server/grpc_server.py`) calls `add_insecure_port("[::]:<port>")`
(or `add_secure_port`) unconditionally, and the only switch that skips it is
read-only mode, which also refuses spans over HTTP. So the gRPC server's port
methods are wrapped to put every address on loopback before Phoenix starts.
"""

from __future__ import annotations

import sys
from typing import Any

import grpc
import grpc.aio

LOOPBACK = "127.0.0.1"


def loopback_address(address: str) -> str:
    """`[::]:4317`, `0.0.0.0:4317` or `localhost:4317` -> `127.0.0.1:4317`."""
    _, _, port = address.rpartition(":")
    return f"{LOOPBACK}:{port}"


def _loopback_server(*args: Any, **kwargs: Any) -> grpc.aio.Server:
    server = _make_server(*args, **kwargs)
    add_insecure, add_secure = server.add_insecure_port, server.add_secure_port
    server.add_insecure_port = lambda address: add_insecure(loopback_address(address))  # type: ignore[method-assign]
    server.add_secure_port = lambda address, credentials: add_secure(loopback_address(address), credentials)  # type: ignore[method-assign]
    return server


_make_server = grpc.aio.server
grpc.aio.server = _loopback_server  # Phoenix looks it up as `grpc.aio.server` at start, after this runs.


if __name__ == "__main__":
    from phoenix.server.main import main

    sys.argv = ["phoenix", "serve", *sys.argv[1:]]
    main()
