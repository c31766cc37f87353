"""The completion journal: what a paid model call answered, kept so a redelivered job never pays again.

A step that pays a provider records its result under a key derived from the
job (the input event's id and the step: ids are derived, so a redelivered
job has the same key) before emitting anything. When the job comes back
after a crash, a rebalance or a failed publish, the recorded result is
re-emitted instead of calling the model: answered once, billed once, paid
once. The first record under a key wins; a second writer (two workers racing
on one redelivered job) gets the first one back, so both emit the same.

Entries are opaque JSON text, so the journal knows nothing of models.
Entries older than the retention are deleted, at most once per
`trim_interval` and as part of a write, so trimming costs nothing per call.

SQLite (a file under the data dir) is the default; PostgreSQL through an
asyncpg pool serves several generator workers at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from relaychain.agents.stores.batching import Batched, insert_new
from relaychain.agents.stores.connections import PostgresPool, SqliteFile
from relaychain.agents.stores.errors import database_errors

__all__ = [
    "DEFAULT_RETENTION",
    "POSTGRES_JOURNAL_MIGRATIONS",
    "CompletionJournal",
    "JournalEntry",
    "PostgresJournal",
    "SqliteJournal",
]

DEFAULT_RETENTION = timedelta(days=7)
"""Longer than any redelivery: a job still unacknowledged after a week has been dead-lettered long ago."""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    payload: str
    recorded_at: datetime


class CompletionJournal(Protocol):
    async def get(self, key: str) -> JournalEntry | None:
        """The entry recorded under `key`, if any (and not yet trimmed)."""
        ...

    async def record(self, key: str, payload: str) -> JournalEntry:
        """Record `payload` under `key` unless something already is; returns what the key holds now."""
        ...

    async def close(self) -> None: ...


class _Trimming:
    """When the next trim is due: at most once per interval, checked on writes."""

    def __init__(self, retention: timedelta, interval: timedelta) -> None:
        self.retention = retention
        self._interval_s = interval.total_seconds()
        self._due = 0.0

    def due(self) -> datetime | None:
        """The cutoff to trim before, when a trim is due now."""
        now = time.monotonic()
        if now < self._due:
            return None
        self._due = now + self._interval_s
        return datetime.now(UTC) - self.retention


_SQLITE_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS completions (
        key TEXT PRIMARY KEY,
        payload TEXT NOT NULL,
        recorded_at REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS completions_by_age ON completions (recorded_at);
    """,
)
"""Schema versions of the SQLite journal, counted in the file's `user_version`; append, never edit."""


class SqliteJournal:
    """The journal in one SQLite file (WAL); the schema is created on first use."""

    def __init__(
        self,
        path: str | Path,
        *,
        retention: timedelta = DEFAULT_RETENTION,
        trim_interval: timedelta = timedelta(hours=1),
    ) -> None:
        self._file = SqliteFile(path, migrations=_SQLITE_MIGRATIONS)
        self._trimming = _Trimming(retention, trim_interval)
        self._get: Batched[str, JournalEntry | None] = Batched(self._get_many)
        self._insert: Batched[tuple[str, str, float], bool] = Batched(self._insert_many)

    async def get(self, key: str) -> JournalEntry | None:
        with database_errors("journal"):
            return await self._get(key)

    async def record(self, key: str, payload: str) -> JournalEntry:
        recorded_at = time.time()
        with database_errors("journal"):
            inserted = await self._insert((key, payload, recorded_at))
        if inserted:
            return JournalEntry(payload, datetime.fromtimestamp(recorded_at, UTC))
        entry = await self.get(key)
        assert entry is not None, "a record under this key exists: it made the insert a no-op"
        return entry

    async def _get_many(self, keys: list[str]) -> list[JournalEntry | None]:
        db = await self._file.connection()
        rows = await db.execute_fetchall(
            f"SELECT key, payload, recorded_at FROM completions WHERE key IN ({', '.join('?' * len(keys))})", keys
        )
        found = {key: JournalEntry(payload, datetime.fromtimestamp(at, UTC)) for key, payload, at in rows}
        return [found.get(key) for key in keys]

    async def _insert_many(self, rows: list[tuple[str, str, float]]) -> list[bool]:
        """One statement for the batch, committed before any caller returns; RETURNING names the new keys."""
        db = await self._file.connection()
        cutoff = self._trimming.due()
        if cutoff is not None:
            await db.execute("DELETE FROM completions WHERE recorded_at < ?", (cutoff.timestamp(),))
        return await insert_new(db, "completions", "key, payload, recorded_at", rows)

    async def close(self) -> None:
        await self._file.close()


POSTGRES_JOURNAL_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE relaychain_completions (
        key TEXT PRIMARY KEY,
        payload TEXT NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX relaychain_completions_by_age ON relaychain_completions (recorded_at);
    """,
)
"""Schema versions of the completion journal, applied in order by `migrate()`; append, never edit."""


class PostgresJournal:
    """The journal in PostgreSQL through an asyncpg pool; run `migrate()` (or `relaychain db migrate`) first."""

    def __init__(
        self,
        dsn: str,
        *,
        retention: timedelta = DEFAULT_RETENTION,
        trim_interval: timedelta = timedelta(hours=1),
        min_pool: int = 1,
        max_pool: int = 16,
    ) -> None:
        # The journal write stands between the provider's answer and its safety from a crash: it must not
        # queue behind a small pool when many jobs finish at once.
        self._postgres = PostgresPool(dsn, min_size=min_pool, max_size=max_pool)
        self._trimming = _Trimming(retention, trim_interval)

    async def migrate(self) -> int:
        """Apply the schema versions not yet applied; returns how many were. Safe to run concurrently."""
        return await self._postgres.migrate("completion_journal", POSTGRES_JOURNAL_MIGRATIONS)

    async def get(self, key: str) -> JournalEntry | None:
        with database_errors("journal"):
            pool = await self._postgres.pool()
            row = await pool.fetchrow("SELECT payload, recorded_at FROM relaychain_completions WHERE key = $1", key)
        return None if row is None else JournalEntry(row["payload"], row["recorded_at"])

    async def record(self, key: str, payload: str) -> JournalEntry:
        with database_errors("journal"):
            pool = await self._postgres.pool()
            cutoff = self._trimming.due()
            if cutoff is not None:
                await pool.execute("DELETE FROM relaychain_completions WHERE recorded_at < $1", cutoff)
            # The no-op update makes RETURNING give the row that won, whoever inserted it.
            row = await pool.fetchrow(
                "INSERT INTO relaychain_completions (key, payload) VALUES ($1, $2)"
                " ON CONFLICT (key) DO UPDATE SET key = excluded.key RETURNING payload, recorded_at",
                key,
                payload,
            )
        assert row is not None  # RETURNING after DO UPDATE yields the row whether it was new or not
        return JournalEntry(row["payload"], row["recorded_at"])

    async def close(self) -> None:
        await self._postgres.close()
