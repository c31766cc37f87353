"""Prices per million tokens, input and output apart, in exact Decimal and the model's own currency."""

from __future__ import annotations

from decimal import Decimal

import pytest

from relaychain.agents.tokens import price, priced_usage
from relaychain.schemas.config import Price

GPT_4O = Price(input_per_million=Decimal("2.50"), output_per_million=Decimal("10.00"), currency="USD")
ERNIE = Price(input_per_million=Decimal("30.00"), output_per_million=Decimal("90.00"), currency="CNY")


def test_input_and_output_are_priced_separately() -> None:
    assert price(1_000, 500, GPT_4O) == (Decimal("0.00250000"), Decimal("0.00500000"))
    assert price(1_000_000, 0, GPT_4O) == (Decimal("2.50000000"), Decimal("0E-8"))


def test_costs_are_exact_decimals_to_1e_8() -> None:
    input_cost, output_cost = price(1, 1, GPT_4O)
    assert (input_cost, output_cost) == (Decimal("0.00000250"), Decimal("0.00001000"))
    assert input_cost.as_tuple().exponent == -8
    assert isinstance(input_cost, Decimal) and isinstance(output_cost, Decimal)
    # Many tiny calls add up exactly; float would drift.
    assert sum((price(1, 0, GPT_4O)[0] for _ in range(100_000)), Decimal(0)) == Decimal("0.25")


@pytest.mark.parametrize(
    ("per_million", "tokens", "expected"),
    [
        ("0.015", 1, "0.00000002"),  # 1.5e-8: a tie, rounds to the even neighbour
        ("0.025", 1, "0.00000002"),  # 2.5e-8: a tie, rounds to the even neighbour
        ("0.035", 1, "0.00000004"),
        ("0.0151", 1, "0.00000002"),
    ],
)
def test_rounding_is_half_even(per_million: str, tokens: int, expected: str) -> None:
    rate = Price(input_per_million=Decimal(per_million), output_per_million=Decimal(0))
    assert price(tokens, 0, rate)[0] == Decimal(expected)


def test_huge_counts_stay_exact() -> None:
    rate = Price(input_per_million=Decimal("0.123456789"), output_per_million=Decimal("1"))
    assert price(10**15, 10**15, rate) == (Decimal("123456789.00000000"), Decimal("1000000000.00000000"))


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        price(-1, 0, GPT_4O)


def test_usage_keeps_the_models_currency() -> None:
    usd = priced_usage(step="generate", model="gpt-4o", price_per_million=GPT_4O, input_tokens=2_000, output_tokens=100)
    cny = priced_usage(
        step="generate", model="ernie-4.0-8k", price_per_million=ERNIE, input_tokens=2_000, output_tokens=100
    )
    assert (usd.currency, usd.input_cost, usd.output_cost) == ("USD", Decimal("0.00500000"), Decimal("0.00100000"))
    assert (cny.currency, cny.input_cost, cny.output_cost) == ("CNY", Decimal("0.06000000"), Decimal("0.00900000"))
    assert cny.cost == Decimal("0.069")


# --- issue 12: pricing as providers bill ------------------------------------------

from datetime import date  # noqa: E402

from pydantic import ValidationError  # noqa: E402

from relaychain.agents.tokens.pricing import UnknownExchangeRate, convert  # noqa: E402
from relaychain.schemas.config import ModelConfig, PriceTier  # noqa: E402

CACHED = Price(
    input_per_million=Decimal("2.50"),
    cached_input_per_million=Decimal("1.25"),
    output_per_million=Decimal("10.00"),
)
TIERED = Price(
    input_per_million=Decimal("1.25"),
    output_per_million=Decimal("10.00"),
    cached_input_per_million=Decimal("0.31"),
    tiers=(
        PriceTier(
            above_input_tokens=200_000,
            input_per_million=Decimal("2.50"),
            output_per_million=Decimal("15.00"),
            cached_input_per_million=Decimal("0.625"),
        ),
    ),
)


def test_cached_prompt_tokens_bill_at_the_cached_rate() -> None:
    usage = priced_usage(
        step="generate",
        model="gpt-4o",
        price_per_million=CACHED,
        input_tokens=1_000,
        output_tokens=100,
        cached_input_tokens=800,
    )
    # 200 uncached at 2.50 + 800 cached at 1.25 per million.
    assert usage.input_cost == Decimal("0.00150000")
    assert usage.output_cost == Decimal("0.00100000")
    assert usage.cached_input_tokens == 800
    assert usage.price is not None and usage.price.cached_input_per_million == Decimal("1.25")


def test_cached_tokens_default_to_the_input_rate() -> None:
    assert price(1_000, 0, GPT_4O, cached_input_tokens=1_000) == price(1_000, 0, GPT_4O)


def test_reasoning_tokens_are_output_billed_once_and_reported_apart() -> None:
    usage = priced_usage(
        step="generate", model="o1", price_per_million=GPT_4O, input_tokens=0, output_tokens=1_000, reasoning_tokens=700
    )
    assert usage.output_cost == Decimal("0.01000000")  # 1,000 output tokens, reasoning included, once
    assert usage.reasoning_tokens == 700


def test_a_prompt_above_the_tier_bills_the_whole_call_at_the_tier() -> None:
    below = priced_usage(
        step="g", model="m", price_per_million=TIERED, input_tokens=200_000, output_tokens=1_000, cached_input_tokens=0
    )
    above = priced_usage(
        step="g", model="m", price_per_million=TIERED, input_tokens=200_001, output_tokens=1_000, cached_input_tokens=1
    )
    assert (below.input_cost, below.output_cost) == (Decimal("0.25000000"), Decimal("0.01000000"))
    assert below.price is not None and below.price.tier == 0
    # 200,000 uncached at 2.50 + 1 cached at 0.625 per million = 0.500000625, half-even to 0.50000062; output at 15.00.
    assert (above.input_cost, above.output_cost) == (Decimal("0.50000062"), Decimal("0.01500000"))
    assert above.price is not None and above.price.tier == 1


def test_price_changes_apply_from_their_day_and_old_rows_keep_theirs() -> None:
    config = ModelConfig(
        provider="openai",
        tokenizer="tiktoken:o200k_base",
        context_window=128_000,
        max_output_tokens=4_096,
        price=GPT_4O,
        price_changes=(
            Price(
                input_per_million=Decimal("2.00"), output_per_million=Decimal("8.00"), effective_from=date(2026, 12, 1)
            ),
        ),
    )
    assert config.price_on(date(2026, 11, 30)).input_per_million == Decimal("2.50")
    assert config.price_on(date(2026, 12, 1)).input_per_million == Decimal("2.00")
    old = priced_usage(
        step="g",
        model="gpt-4o",
        price_per_million=config.price_on(date(2026, 11, 30)),
        input_tokens=1_000_000,
        output_tokens=0,
    )
    assert old.input_cost == Decimal("2.50000000") and old.price is not None and old.price.effective_from is None


def test_a_model_without_a_price_stops_start_up_unless_marked_free() -> None:
    fields = {"provider": "transformers", "tokenizer": "hf", "context_window": 8192, "max_output_tokens": 512}
    with pytest.raises(ValidationError, match="needs a `price`"):
        ModelConfig(**fields)
    free = ModelConfig(**fields, free=True)
    assert (
        priced_usage(
            step="g", model="local", price_per_million=free.price_on(date.today()), input_tokens=5, output_tokens=5
        ).cost
        == 0
    )
    with pytest.raises(ValidationError, match="cannot have a non-zero price"):
        ModelConfig(**fields, free=True, price=GPT_4O)


def test_amounts_convert_by_the_configured_rate_or_its_inverse() -> None:
    rates = {"CNY/USD": Decimal("0.1380")}
    assert convert(Decimal("100.00000000"), "CNY", "USD", rates) == Decimal("13.80000000")
    assert convert(Decimal("13.80000000"), "USD", "CNY", rates) == Decimal("100.00000000")
    assert convert(Decimal("1.5"), "USD", "USD", rates) == Decimal("1.5")
    with pytest.raises(UnknownExchangeRate, match="EUR/USD"):
        convert(Decimal(1), "EUR", "USD", rates)
