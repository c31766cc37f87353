"""Server-sent events framing."""

from __future__ import annotations

from typing import Any

import orjson

KEEPALIVE = b": keepalive\n\n"


def _default(value: Any) -> Any:
    return str(value)


def sse(event: str | None, data: Any) -> bytes:
    payload = data if isinstance(data, bytes) else orjson.dumps(data, default=_default)
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + payload + b"\n\n"
