"""What tokens cost, as providers bill them: exact Decimal arithmetic on per-million prices, never float.

- Cached prompt tokens bill at the cached rate (the input rate when none is set);
  the rest of the prompt at the input rate.
- Reasoning tokens are part of the output tokens and bill at the output rate;
  they are reported apart, not billed twice.
- A prompt above a tier's threshold bills the whole call at that tier (the
  highest tier it passes), as long-context prices work.
- The price used travels with the usage (`AppliedPrice`), so the ledger keeps
  what was billed and a later price change never reprices old rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from relaychain.schemas import StepUsage
from relaychain.schemas.config import Price, PriceTier
from relaychain.schemas.events import AppliedPrice

__all__ = ["COST_QUANTUM", "UnknownExchangeRate", "applied_price", "convert", "price", "priced_usage", "quantize_cost"]

COST_QUANTUM = Decimal("1e-8")
"""Costs are kept to 1e-8 of the currency unit: well below any per-token price."""
_MILLION = Decimal(1_000_000)


def quantize_cost(amount: Decimal) -> Decimal:
    return amount.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


def applied_price(price: Price, input_tokens: int) -> AppliedPrice:
    """The unit prices a call with `input_tokens` prompt tokens bills at: the highest tier it passes, else the base."""
    rates: Price | PriceTier = price
    tier = 0
    for number, candidate in enumerate(price.tiers, start=1):
        if input_tokens > candidate.above_input_tokens:
            rates, tier = candidate, number
    cached = rates.cached_input_per_million
    return AppliedPrice(
        input_per_million=rates.input_per_million,
        cached_input_per_million=rates.input_per_million if cached is None else cached,
        output_per_million=rates.output_per_million,
        effective_from=price.effective_from,
        tier=tier,
    )


def price(
    input_tokens: int, output_tokens: int, price: Price, *, cached_input_tokens: int = 0
) -> tuple[Decimal, Decimal]:
    """(input cost, output cost) in `price.currency`, each rounded half-even to 1e-8."""
    input_cost, output_cost, _ = _bill(input_tokens, output_tokens, cached_input_tokens, price)
    return input_cost, output_cost


def _bill(input_tokens: int, output_tokens: int, cached: int, price: Price) -> tuple[Decimal, Decimal, AppliedPrice]:
    if input_tokens < 0 or output_tokens < 0 or cached < 0:
        raise ValueError("token counts cannot be negative")
    if cached > input_tokens:
        raise ValueError(f"{cached} cached tokens cannot exceed the {input_tokens} prompt tokens")
    rates = applied_price(price, input_tokens)
    # Wide enough that the products are exact before the one rounding step.
    with localcontext(prec=60):
        input_cost = (
            Decimal(input_tokens - cached) * rates.input_per_million + Decimal(cached) * rates.cached_input_per_million
        ) / _MILLION
        output_cost = Decimal(output_tokens) * rates.output_per_million / _MILLION
        return quantize_cost(input_cost), quantize_cost(output_cost), rates


class UnknownExchangeRate(LookupError):
    def __init__(self, source: str, target: str) -> None:
        super().__init__(f"no exchange rate {source}/{target} (or {target}/{source}) in the config's exchange_rates")
        self.pair = f"{source}/{target}"


def convert(amount: Decimal, source: str, target: str, rates: Mapping[str, Decimal]) -> Decimal:
    """`amount` of `source` in `target`, by the configured rate (or the inverse of the opposite one), to 1e-8."""
    if source == target:
        return amount
    with localcontext(prec=60):
        if (rate := rates.get(f"{source}/{target}")) is not None:
            return quantize_cost(amount * rate)
        if (inverse := rates.get(f"{target}/{source}")) is not None:
            return quantize_cost(amount / inverse)
    raise UnknownExchangeRate(source, target)


def priced_usage(
    *,
    step: str,
    model: str,
    price_per_million: Price,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    reasoning_tokens: int = 0,
    latency_ms: float = 0.0,
    finish_reason: str | None = None,
) -> StepUsage:
    """A `StepUsage` for one model call, priced in the model's currency at the price in effect (`price_on`)."""
    input_cost, output_cost, rates = _bill(input_tokens, output_tokens, cached_input_tokens, price_per_million)
    return StepUsage(
        step=step,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached_input_tokens,
        reasoning_tokens=reasoning_tokens,
        price=rates,
        finish_reason=finish_reason,
        input_cost=input_cost,
        output_cost=output_cost,
        currency=price_per_million.currency,
        latency_ms=latency_ms,
    )
