"""One contract for every CompletionJournal: SQLite and PostgreSQL keep the first completion per key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from relaychain.agents.stores.journal import CompletionJournal, PostgresJournal, SqliteJournal

JournalFactory = Callable[..., Awaitable[CompletionJournal]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def open_journal(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JournalFactory]:
    """Opens a fresh handle on the same underlying journal each call, like a restarted worker."""
    opened: list[CompletionJournal] = []

    async def factory(**options: timedelta) -> CompletionJournal:
        journal: CompletionJournal
        if request.param == "sqlite":
            journal = SqliteJournal(tmp_path / "journal.sqlite3", **options)
        else:
            pg = PostgresJournal(request.getfixturevalue("postgres_dsn"), **options)
            await pg.migrate()
            journal = pg
        opened.append(journal)
        return journal

    yield factory
    for journal in opened:
        await journal.close()


def key() -> str:
    # PostgreSQL is shared by the session: each test writes its own keys.
    return f"job-{uuid.uuid4().hex}/generate"


async def test_a_recorded_completion_is_found_by_a_restarted_worker(open_journal: JournalFactory) -> None:
    journal = await open_journal()
    k = key()
    assert await journal.get(k) is None
    entry = await journal.record(k, '{"text": "hello"}')
    assert entry.payload == '{"text": "hello"}'
    restarted = await open_journal()
    assert await restarted.get(k) == entry


async def test_the_first_record_under_a_key_wins(open_journal: JournalFactory) -> None:
    """Two workers racing on one redelivered job both emit the completion recorded first."""
    first, second = await open_journal(), await open_journal()
    k = key()
    winner = await first.record(k, "first")
    entries = await asyncio.gather(second.record(k, "second"), first.record(k, "third"))
    assert all(entry == winner for entry in entries)


async def test_concurrent_records_of_one_key_on_one_handle_all_get_the_one_stored(open_journal: JournalFactory) -> None:
    """Concurrent records on one handle (one statement on SQLite, a pool on PostgreSQL): one wins for all."""
    journal = await open_journal()
    keys = [key() for _ in range(5)]
    entries = await asyncio.gather(*(journal.record(k, f"{k}/a") for k in keys), journal.record(keys[0], "late"))
    assert [e.payload for e in entries[1:-1]] == [f"{k}/a" for k in keys[1:]]
    assert entries[0] == entries[-1] and entries[0].payload in (f"{keys[0]}/a", "late")
    assert [await journal.get(k) for k in keys] == entries[:-1]


async def test_entries_older_than_the_retention_are_trimmed_on_a_write(open_journal: JournalFactory) -> None:
    keeping = await open_journal()
    old = key()
    await keeping.record(old, "old")
    await asyncio.sleep(0.05)
    trimming = await open_journal(retention=timedelta(milliseconds=20), trim_interval=timedelta(hours=1))
    fresh = key()
    await trimming.record(fresh, "fresh")
    assert await trimming.get(old) is None
    assert (await trimming.get(fresh)) is not None
    # At most once per interval: the next write does not scan again.
    await asyncio.sleep(0.05)
    await trimming.record(key(), "later")
    assert await trimming.get(fresh) is not None
