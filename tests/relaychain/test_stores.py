"""`relaychain db migrate` covers every PostgreSQL store, and the composition root opens them by the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaychain.agents.stores.journal import PostgresJournal, SqliteJournal
from relaychain.settings import load_settings
from relaychain.stores import JOURNAL_FILE, migrate, open_journal


@pytest.mark.postgres
async def test_migrate_creates_every_store_and_is_safe_to_run_again(postgres_dsn: str) -> None:
    first = await migrate(postgres_dsn)
    assert set(first) == {"conversation store", "cost ledger", "completion journal", "provider rate limits"}
    assert await migrate(postgres_dsn) == dict.fromkeys(first, 0)


async def test_the_journal_is_sqlite_under_the_data_dir_with_the_configured_retention(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, journal_retention_days=2)
    journal = await open_journal(settings)
    assert isinstance(journal, SqliteJournal) and not isinstance(journal, PostgresJournal)
    entry = await journal.record("job/generate", "{}")
    assert (tmp_path / JOURNAL_FILE).exists() and await journal.get("job/generate") == entry
    assert journal._trimming.retention.days == 2
    await journal.close()
