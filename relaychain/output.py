"""How the CLI prints values: money amounts one way everywhere, JSON one way everywhere."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import click
import orjson

__all__ = ["amount", "dump_json", "echo_json", "money"]

# The ledger keeps amounts to 1e-8; printing the same places everywhere keeps a
# `run`, a `trace` and a `costs` line of one call comparable digit for digit.
_PLACES = Decimal("0.00000001")


def amount(value: Decimal | float | int | str) -> str:
    """Fixed point to 8 places: `0.00000030`, never `3.0E-7` or `0E-8`."""
    return f"{Decimal(str(value)).quantize(_PLACES):f}"


def money(value: Decimal | float | int | str, currency: str) -> str:
    return f"{amount(value)} {currency}".rstrip()


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return amount(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dump_json(value: Any) -> str:
    """Indented JSON; a Decimal becomes its fixed-point string, so no precision is lost to floats."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_INDENT_2).decode()


def echo_json(value: Any) -> None:
    click.echo(dump_json(value))
