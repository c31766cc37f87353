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
