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
from relaychain.schemas.envelope import utc_now
from relaychain.settings import ConfigError, load_settings

__all__ = ["tokens"]


@click.command()
@click.argument("text")
@click.option("--model", help="A configured model: its own tokenizer, and its input price.")
@click.option("--encoding", type=click.Choice(ENCODING_NAMES), help="A tiktoken encoding, without a model.")
def tokens(text: str, model: str | None, encoding: str | None) -> None:
    """Print TEXT's token ids, their count, each token's bytes, and (with --model) its input cost."""
    if (model is None) == (encoding is None):
        raise click.UsageError("give exactly one of --model or --encoding")
    counter: TokenCounter
    if encoding is not None:
        counter = TiktokenCounter(load_encoding(encoding))
        click.echo(f"encoding: {encoding}")
    else:
        try:
            app = load_settings().app
        except ConfigError as exc:
            raise click.ClickException(f"bad config: {exc}") from None
        config = app.models.get(model)
        if config is None:
            raise click.BadParameter(
                f"unknown model {model!r}; configured: {', '.join(sorted(app.models))}", param_hint="--model"
            )
        try:
            counter = counter_for(config, model)
        except (EncodingUnavailable, ValueError, OSError) as exc:
            raise click.ClickException(f"no tokenizer for {model}: {exc}") from None
        click.echo(f"model: {model} ({config.tokenizer})")
    ids = counter.encode(text)
    click.echo(f"ids: {ids}")
    click.echo(f"count: {len(ids)}")
    for token_id, piece in zip(ids, counter.decode_bytes(ids), strict=True):
        click.echo(f"{token_id} -> {piece!r}")
    if model is not None:
        rate = app.models[model].price_on(utc_now().date())
        input_cost, _ = price(len(ids), 0, rate)
        click.echo(
            f"input cost: {input_cost} {rate.currency} ({rate.input_per_million} {rate.currency} per million input tokens)"
        )
