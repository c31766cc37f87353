"""`relaychain asyncapi [--output FILE]`: the AsyncAPI 3.0 document of the configured deployment."""

from __future__ import annotations

from pathlib import Path

import click
import orjson
import yaml

from relaychain.asyncapi import asyncapi_document
from relaychain.settings import load_settings

__all__ = ["asyncapi"]


@click.command()
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE (YAML for .yaml/.yml, JSON otherwise) instead of printing JSON.",
)
def asyncapi(output: Path | None) -> None:
    """Print the AsyncAPI 3.0 document: topics, messages (JSON Schema), keys, headers, and each agent's reads and writes."""
    document = asyncapi_document(load_settings())  # a bad config is the CLI boundary's: one line, exit 2
    if output is not None and output.suffix in (".yaml", ".yml"):
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    else:
        text = orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(output)
