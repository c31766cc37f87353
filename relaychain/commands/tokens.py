"""`relaychain tokens`: how a model's tokenizer splits a text, and what that text costs as input."""

from __future__ import annotations

import click

from relaychain.agents.tokens import (
    ENCODING_NAMES,
    EncodingUnavailable,
    TiktokenCounter,
    TokenCounter,
    counter_for,
    load_encoding,
    price,
)
from relaychain.commands.boundary import Failed
from relaychain.output import echo_json, money
from relaychain.schemas.config import Price
from relaychain.schemas.envelope import utc_now
from relaychain.schemas.events import Money
from relaychain.settings import load_settings

__all__ = ["tokens"]


@click.command()
@click.argument("text")
@click.option("--model", help="A configured model: its own tokenizer, and its input price.")
@click.option("--encoding", type=click.Choice(ENCODING_NAMES), help="A tiktoken encoding, without a model.")
@click.option("--json", "as_json", is_flag=True, help="Print {tokenizer, ids, count, pieces, input_cost} as JSON.")
def tokens(text: str, model: str | None, encoding: str | None, as_json: bool) -> None:
    """Print TEXT's token ids, their count, each token's bytes, and (with --model) its input cost."""
    if (model is None) == (encoding is None):
        raise click.UsageError("give exactly one of --model or --encoding")
    counter: TokenCounter
    rate: Price | None = None
    if encoding is not None:
        counter = TiktokenCounter(load_encoding(encoding))
        tokenizer = encoding
    elif model is not None:
        app = load_settings().app
        config = app.models.get(model)
        if config is None:
            raise click.BadParameter(
                f"unknown model {model!r}; configured: {', '.join(sorted(app.models))}", param_hint="--model"
            )
        try:
            counter = counter_for(config, model)
        except (EncodingUnavailable, ValueError, OSError) as exc:
            raise Failed(f"no tokenizer for {model}: {exc}") from None
        tokenizer, rate = config.tokenizer, config.price_on(utc_now().date())
    ids = counter.encode(text)
    pieces = counter.decode_bytes(ids)
    input_cost = None if rate is None else Money(amount=price(len(ids), 0, rate)[0], currency=rate.currency)
    if as_json:
        echo_json(
            {
                "model": model,
                "tokenizer": tokenizer,
                "ids": ids,
                "count": len(ids),
                "pieces": [piece.decode("utf-8", errors="backslashreplace") for piece in pieces],
                "input_cost": None if input_cost is None else input_cost.model_dump(),
            }
        )
        return
    click.echo(f"model: {model} ({tokenizer})" if model is not None else f"encoding: {tokenizer}")
    click.echo(f"ids: {ids}")
    click.echo(f"count: {len(ids)}")
    for token_id, piece in zip(ids, pieces, strict=True):
        click.echo(f"{token_id} -> {piece!r}")
    if rate is not None and input_cost is not None:
        click.echo(
            f"input cost: {money(input_cost.amount, input_cost.currency)} "
            f"({rate.input_per_million:f} {rate.currency} per million input tokens)"
        )
