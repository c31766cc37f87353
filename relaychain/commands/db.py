"""`relaychain db migrate`: create or upgrade relaychain's PostgreSQL schema."""

from __future__ import annotations

import asyncio

import click

from relaychain.settings import ConfigError, load_settings
from relaychain.stores import migrate as migrate_stores

__all__ = ["db"]


@click.group()
def db() -> None:
    """relaychain's PostgreSQL schema."""


@db.command()
@click.option(
    "--postgres", "postgres_dsn", metavar="DSN", help="Database to migrate (else RELAYCHAIN_POSTGRES_DSN / config)."
)
def migrate(postgres_dsn: str | None) -> None:
    """Create or upgrade the tables relaychain keeps in PostgreSQL; safe to run again."""
    dsn = postgres_dsn
    if dsn is None:
        try:
            dsn = load_settings().postgres_dsn
        except ConfigError as exc:
            raise click.ClickException(f"bad config: {exc}") from None
    if not dsn:
        raise click.ClickException("no PostgreSQL configured: pass --postgres DSN or set RELAYCHAIN_POSTGRES_DSN")
    for component, applied in asyncio.run(migrate_stores(dsn)).items():
        click.echo(f"{component}: {applied} migration(s) applied" if applied else f"{component}: up to date")
