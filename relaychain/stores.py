"""Which store backs each job: PostgreSQL when a DSN is configured, SQLite or numpy files under the data dir otherwise."""

from __future__ import annotations

from datetime import timedelta

from relaychain.agents.llm.ratelimit import PostgresRateStore
from relaychain.agents.stores.history import (
    ConversationStore,
    PostgresConversationStore,
    SqliteConversationStore,
)
from relaychain.agents.stores.journal import CompletionJournal, PostgresJournal, SqliteJournal
from relaychain.agents.stores.ledger import CostLedger, PostgresLedger, SqliteLedger
from relaychain.agents.stores.unbilled import UNBILLED_FILE, UnbilledSpool
from relaychain.agents.stores.vectors import NumpyVectorIndex, PgVectorIndex, VectorIndex
from relaychain.settings import Settings

LEDGER_FILE = "ledger.sqlite3"
JOURNAL_FILE = "journal.sqlite3"
MEMORY_FILE = "memory.sqlite3"


async def open_ledger(settings: Settings, postgres_dsn: str | None = None) -> CostLedger:
    dsn = postgres_dsn or settings.postgres_dsn
    if dsn:
        ledger = PostgresLedger(dsn)
        await ledger.migrate()
        return ledger
    return SqliteLedger(settings.data_dir / LEDGER_FILE)


def unbilled_spool(settings: Settings) -> UnbilledSpool:
    """Usage the ledger could not take, on this machine's data dir (PostgreSQL ledger or not)."""
    return UnbilledSpool(settings.data_dir / UNBILLED_FILE)


async def open_journal(settings: Settings, postgres_dsn: str | None = None) -> CompletionJournal:
    dsn = postgres_dsn or settings.postgres_dsn
    retention = timedelta(days=settings.journal_retention_days)
    if dsn:
        journal = PostgresJournal(dsn, retention=retention)
        await journal.migrate()
        return journal
    return SqliteJournal(settings.data_dir / JOURNAL_FILE, retention=retention)


async def open_conversation_store(settings: Settings, postgres_dsn: str | None = None) -> ConversationStore:
    dsn = postgres_dsn or settings.postgres_dsn
    if dsn:
        store = PostgresConversationStore(dsn)
        await store.migrate()
        return store
    return SqliteConversationStore(settings.data_dir / MEMORY_FILE)


def open_index(settings: Settings, name: str, dim: int, postgres_dsn: str | None = None) -> VectorIndex:
    """pgvector tables are created when an index is first opened; numpy files live under `<data_dir>/indexes/NAME`."""
    dsn = postgres_dsn or settings.postgres_dsn
    if dsn:
        return PgVectorIndex(dsn, name, dim)
    return NumpyVectorIndex(settings.data_dir / "indexes" / name)


async def migrate(dsn: str) -> dict[str, int]:
    """Create or upgrade every table relaychain keeps in PostgreSQL; returns migrations applied per component."""
    applied: dict[str, int] = {}
    stores = (
        ("conversation store", PostgresConversationStore(dsn)),
        ("cost ledger", PostgresLedger(dsn)),
        ("completion journal", PostgresJournal(dsn)),
        ("provider rate limits", PostgresRateStore(dsn)),
    )
    for name, store in stores:
        try:
            applied[name] = await store.migrate()
        finally:
            await store.close()
    return applied
