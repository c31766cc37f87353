"""`relaychain db migrate`: create or upgrade relaychain's PostgreSQL schema.

Also the helper the composition root uses to open the conversation store:
PostgreSQL when a DSN is configured, else SQLite under the data dir.
"""

from __future__ import annotations

import asyncio

import click

from agents.stores.history import ConversationStore, PostgresConversationStore, SqliteConversationStore
from relaychain.settings import ConfigError, Settings, load_settings

__all__ = ["MEMORY_FILE", "db", "open_conversation_store"]

MEMORY_FILE = "memory.sqlite3"
"""The SQLite conversation store's file name under the data dir."""


def open_conversation_store(settings: Settings) -> ConversationStore:
    """PostgreSQL when `postgres_dsn` is set (run `relaychain db migrate` first), else `<data_dir>/memory.sqlite3`."""
    if settings.postgres_dsn:
        return PostgresConversationStore(settings.postgres_dsn)
    return SqliteConversationStore(settings.data_dir / MEMORY_FILE)


@click.group()
def db() -> None:
    """relaychain's PostgreSQL schema."""


@db.command()
@click.option("--postgres", "postgres_dsn", metavar="DSN", help="Database to migrate (else RELAYCHAIN_POSTGRES_DSN / config).")
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
    applied = asyncio.run(_migrate(dsn))
    click.echo(f"conversation store: {applied} migration(s) applied" if applied else "conversation store: up to date")


async def _migrate(dsn: str) -> int:
    store = PostgresConversationStore(dsn)
    try:
        return await store.migrate()
    finally:
        await store.close()
