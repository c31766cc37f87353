"""What tokens cost: exact Decimal arithmetic on per-million prices, never float."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from relaychain.schemas import StepUsage
from relaychain.schemas.config import Price

__all__ = ["COST_QUANTUM", "price", "priced_usage", "quantize_cost"]

COST_QUANTUM = Decimal("1e-8")
"""Costs are kept to 1e-8 of the currency unit: well below any per-token price."""
_MILLION = Decimal(1_000_000)


def quantize_cost(amount: Decimal) -> Decimal:
    return amount.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


def price(input_tokens: int, output_tokens: int, price: Price) -> tuple[Decimal, Decimal]:
    """(input cost, output cost) in `price.currency`, each rounded half-even to 1e-8."""
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError("token counts cannot be negative")
    # Wide enough that the product is exact before the one rounding step.
    with localcontext(prec=60):
        input_cost = Decimal(input_tokens) * price.input_per_million / _MILLION
        output_cost = Decimal(output_tokens) * price.output_per_million / _MILLION
        return quantize_cost(input_cost), quantize_cost(output_cost)


def priced_usage(
    *,
    step: str,
    model: str,
    price_per_million: Price,
    input_tokens: int,
    output_tokens: int,
    latency_ms: float = 0.0,
) -> StepUsage:
    """A `StepUsage` for one model call, priced in the model's currency."""
    input_cost, output_cost = price(input_tokens, output_tokens, price_per_million)
    return StepUsage(
        step=step,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        input_cost=input_cost,
        output_cost=output_cost,
        currency=price_per_million.currency,
        latency_ms=latency_ms,
    )
