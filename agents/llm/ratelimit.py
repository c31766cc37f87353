"""Provider limits (requests and tokens per minute) kept across every generator replica.

The rule is GCRA (the generic cell rate algorithm, a leaky bucket kept as one
number per key): each key stores its "theoretical arrival time" `tat`; a call
of weight `cost` at time `now` is admitted when `max(tat, now) - now <= burst`,
and then moves `tat` on by `cost * interval`. One number per key means one
atomic UPDATE in PostgreSQL, so replicas on many hosts share a limit without
a lock service, and the database's clock is the only clock (no skew between
hosts). Embedded, the same arithmetic runs in process.

`ModelLimiter.admit` is called before each model call: it reserves one
request and the call's expected tokens (prompt plus `max_tokens`) and, when
a limit is reached, waits until the reservation fits or, when the model's
`on_limit` is `fallback`, raises `ModelRateLimited` so the pool tries the
next model instead of collecting 429s.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from relaychain.agents.llm.base import ModelRateLimited
from relaychain.agents.stores.connections import PostgresPool
from relaychain.schemas.config import RateLimits

__all__ = ["MemoryRateStore", "ModelLimiter", "PostgresRateStore", "RateStore"]


class RateStore(Protocol):
    async def reserve(self, key: str, increment_s: float, burst_s: float) -> float:
        """Admit a call that advances `key` by `increment_s` if it fits within `burst_s`; 0.0 when admitted,
        else the seconds to wait before it would fit (nothing is reserved then)."""
        ...

    async def close(self) -> None: ...


class MemoryRateStore:
    """GCRA in one process: the embedded default, and one replica's view when no database is shared."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}

    async def reserve(self, key: str, increment_s: float, burst_s: float) -> float:
        now = time.monotonic()
        start = max(self._tat.get(key, now), now)
        ahead = start - now
        if ahead > burst_s:
            return ahead - burst_s
        self._tat[key] = start + increment_s
        return 0.0

    async def close(self) -> None:
        return None


POSTGRES_RATE_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE relaychain_rate_limits (
        key TEXT PRIMARY KEY,
        tat DOUBLE PRECISION NOT NULL
    );
    """,
)

# One statement: insert or advance the key's tat, but only if the call fits; the database's clock is `now`.
_RESERVE = """
WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::double precision AS now)
INSERT INTO relaychain_rate_limits AS r (key, tat)
SELECT $1, clock.now + $2 FROM clock
ON CONFLICT (key) DO UPDATE
    SET tat = GREATEST(r.tat, EXCLUDED.tat - $2) + $2
    WHERE GREATEST(r.tat, EXCLUDED.tat - $2) - (EXCLUDED.tat - $2) <= $3
RETURNING tat
"""
_AHEAD = (
    "SELECT tat - extract(epoch FROM clock_timestamp())::double precision FROM relaychain_rate_limits WHERE key = $1"
)


class PostgresRateStore:
    """GCRA shared by every replica through one row per key in PostgreSQL."""

    def __init__(self, dsn: str) -> None:
        self._postgres = PostgresPool(dsn, min_size=1, max_size=4)

    async def migrate(self) -> int:
        return await self._postgres.migrate("rate_limits", POSTGRES_RATE_MIGRATIONS)

    async def reserve(self, key: str, increment_s: float, burst_s: float) -> float:
        pool = await self._postgres.pool()
        if await pool.fetchval(_RESERVE, key, increment_s, burst_s) is not None:
            return 0.0
        ahead = await pool.fetchval(_AHEAD, key)
        return max(0.001, float(ahead or 0.0) - burst_s)

    async def close(self) -> None:
        await self._postgres.close()


class ModelLimiter:
    """Admits model calls under each model's configured requests- and tokens-per-minute."""

    def __init__(self, store: RateStore) -> None:
        self._store = store

    async def admit(self, model: str, limits: RateLimits | None, *, tokens: int) -> None:
        """Return once a call of `tokens` expected tokens may go to `model`; raise `ModelRateLimited` when
        the model falls back on a limit, or when waiting would take longer than `max_wait_s`."""
        if limits is None:
            return
        deadline = time.monotonic() + limits.max_wait_s
        for key, per_minute, cost in (
            (f"{model}:requests", limits.requests_per_minute, 1),
            (f"{model}:tokens", limits.tokens_per_minute, tokens),
        ):
            if per_minute is None:
                continue
            interval = 60.0 / per_minute
            # A burst of `burst` calls (or a minute's tokens) may go at once; beyond it, calls are spaced.
            burst_s = interval * (limits.burst - 1) if key.endswith(":requests") else 60.0 - interval * cost
            while (wait := await self._store.reserve(key, interval * cost, max(0.0, burst_s))) > 0:
                if limits.on_limit == "fallback" or time.monotonic() + wait > deadline:
                    raise ModelRateLimited(
                        model, f"{key.rsplit(':', 1)[1]} per minute limit reached; next slot in {wait:.2f}s"
                    )
                await asyncio.sleep(wait)
