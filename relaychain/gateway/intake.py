"""What every endpoint does before the bus: authenticate, bound the body, parse JSON, count open streams."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request as HttpRequest

from relaychain.gateway.errors import HttpProblem
from relaychain.gateway.keys import ApiKeys

ANONYMOUS = "anonymous"


def tenant_of(http: HttpRequest, keys: ApiKeys) -> str | None:
    """The caller's tenant (None without keys configured); 401 for a missing or unknown key."""
    if not keys.enabled:
        return None
    header = http.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    presented = token.strip() if scheme.lower() == "bearer" else http.headers.get("x-api-key", "")
    if not presented:
        raise HttpProblem(401, "missing_api_key", "send an API key: `Authorization: Bearer <key>`")
    tenant = keys.tenant_of(presented)
    if tenant is None:
        raise HttpProblem(401, "invalid_api_key", "the API key is not valid")
    return tenant


async def read_json(http: HttpRequest, max_bytes: int) -> dict[str, Any]:
    declared = http.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise HttpProblem(413, "body_too_large", f"the body is over {max_bytes} bytes", limit=max_bytes)
    body = bytearray()
    async for chunk in http.stream():
        body += chunk
        if len(body) > max_bytes:
            raise HttpProblem(413, "body_too_large", f"the body is over {max_bytes} bytes", limit=max_bytes)
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HttpProblem(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise HttpProblem(400, "malformed_json", "the body must be a JSON object")
    return value


class StreamSlots:
    """Open streams per key (per tenant; one shared count without keys)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: Counter[str] = Counter()

    def take(self, tenant: str | None) -> Callable[[], None]:
        """One slot, or 429; call the returned function (once) when the stream ends."""
        who = tenant or ANONYMOUS
        if self._open[who] >= self._limit:
            raise HttpProblem(
                429, "too_many_streams", f"{self._limit} streams are already open for this key", limit=self._limit
            )
        self._open[who] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._open[who] -= 1

        return release
