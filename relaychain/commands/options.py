"""Option parsing shared by the commands that build requests (`run`, `chat`)."""

from __future__ import annotations

import click


def parse_vars(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--var k=v` pairs as template variables; a pair without `=` is a usage error."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected K=V, got {pair!r}", param_hint="--var")
        parsed[key] = value
    return parsed
