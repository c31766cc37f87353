"""Provider limits: GCRA in process and in PostgreSQL, shared by several limiters as replicas would share it."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from relaychain.agents.llm.base import ModelRateLimited
from relaychain.agents.llm.ratelimit import MemoryRateStore, ModelLimiter, PostgresRateStore
from relaychain.schemas.config import RateLimits


async def test_memory_store_admits_within_the_burst_then_says_how_long_to_wait() -> None:
    store = MemoryRateStore()
    assert await store.reserve("m:requests", 1.0, 1.0) == 0.0
    assert await store.reserve("m:requests", 1.0, 1.0) == 0.0
    wait = await store.reserve("m:requests", 1.0, 1.0)
    assert 0.9 < wait <= 1.0


async def admissions(limiter: ModelLimiter, limits: RateLimits, calls: int) -> list[float]:
    times: list[float] = []
    for _ in range(calls):
        await limiter.admit("gpt-x", limits, tokens=10)
        times.append(time.monotonic())
    return times


def gaps(times: list[float]) -> list[float]:
    ordered = sorted(times)
    return [b - a for a, b in itertools.pairwise(ordered)]


async def test_concurrent_callers_are_spaced_at_the_configured_rate() -> None:
    limiter = ModelLimiter(MemoryRateStore())
    limits = RateLimits(requests_per_minute=1200)  # one call every 50 ms
    started = time.monotonic()
    runs = await asyncio.gather(*(admissions(limiter, limits, 5) for _ in range(4)))
    times = [t for run in runs for t in run]
    assert min(gaps(times)) >= 0.045
    # Not slower than the limit either: 20 calls take about 19 intervals.
    assert time.monotonic() - started < 19 * 0.05 + 0.5


async def test_fallback_models_raise_instead_of_waiting() -> None:
    limiter = ModelLimiter(MemoryRateStore())
    limits = RateLimits(requests_per_minute=60, on_limit="fallback")
    await limiter.admit("gpt-x", limits, tokens=1)
    with pytest.raises(ModelRateLimited) as raised:
        await limiter.admit("gpt-x", limits, tokens=1)
    assert raised.value.code == "model_rate_limited" and raised.value.retryable


async def test_tokens_per_minute_reserve_prompt_and_output_tokens() -> None:
    limiter = ModelLimiter(MemoryRateStore())
    limits = RateLimits(tokens_per_minute=1000, on_limit="fallback")
    await limiter.admit("gpt-x", limits, tokens=600)
    with pytest.raises(ModelRateLimited, match="tokens per minute"):
        await limiter.admit("gpt-x", limits, tokens=600)
    await limiter.admit("other", limits, tokens=600)  # limits are per model


@pytest.mark.postgres
async def test_replicas_share_one_limit_through_postgres(postgres_dsn: str) -> None:
    stores = [PostgresRateStore(postgres_dsn) for _ in range(4)]
    await stores[0].migrate()
    limits = RateLimits(requests_per_minute=1200)
    key_model = f"pg-{time.monotonic_ns()}"

    async def replica(store: PostgresRateStore) -> list[float]:
        limiter = ModelLimiter(store)
        times = []
        for _ in range(5):
            await limiter.admit(key_model, limits, tokens=1)
            times.append(time.monotonic())
        return times

    try:
        runs = await asyncio.gather(*(replica(store) for store in stores))
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    times = [t for run in runs for t in run]
    # Spaced by the database's clock; the local clock sees the same spacing, less round-trip jitter.
    assert min(gaps(times)) >= 0.03
    assert max(times) - min(times) >= 19 * 0.05 - 0.1
