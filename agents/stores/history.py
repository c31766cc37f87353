"""Conversation history stores: the turns of each conversation and its running summary.

A turn is one exchange, the user's message and the assistant's answer, saved
together once the answer has passed moderation and formatting. Appends are
idempotent on the event id that carried the turn, so a redelivered
`memory.save` never records a turn twice. A summary records how many of the
oldest turns it covers, and only ever moves forward: a late write from a
slower worker cannot undo a newer summary.

SQLite (a file under the data dir) is the default; PostgreSQL through an
asyncpg pool serves several memory workers at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field

from schemas import ChatMessage

if TYPE_CHECKING:
    import aiosqlite
    import asyncpg


class Turn(BaseModel):
    """One exchange: what the user said and what the assistant answered."""

    model_config = ConfigDict(frozen=True)

    user: str
    assistant: str

    def messages(self) -> tuple[ChatMessage, ChatMessage]:
        return ChatMessage(role="user", content=self.user), ChatMessage(role="assistant", content=self.assistant)


class Summary(BaseModel):
    """A running summary of a conversation's oldest `turns_covered` turns."""

    model_config = ConfigDict(frozen=True)

    text: str
    turns_covered: int = Field(ge=0)


class ConversationStore(Protocol):
    async def load(self, conversation_id: str) -> list[Turn]:
        """All turns of the conversation, oldest first."""
        ...

    async def append(self, conversation_id: str, turn: Turn, *, event_id: str) -> bool:
        """Record a turn; False (and nothing written) when `event_id` was already recorded."""
        ...

    async def get_summary(self, conversation_id: str) -> Summary | None: ...

    async def set_summary(self, conversation_id: str, summary: Summary) -> None:
        """Keep `summary` unless the stored one already covers more turns."""
        ...

    async def close(self) -> None: ...


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    user_text TEXT NOT NULL,
    assistant_text TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns (conversation_id, seq);
CREATE TABLE IF NOT EXISTS summaries (
    conversation_id TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    turns_covered INTEGER NOT NULL
);
"""


class SqliteConversationStore:
    """History in one SQLite file; the schema is created on first use."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._db: aiosqlite.Connection | None = None
        self._opening = asyncio.Lock()

    async def _connection(self) -> aiosqlite.Connection:
        if self._db is not None:
            return self._db
        async with self._opening:
            if self._db is None:
                import aiosqlite

                self._path.parent.mkdir(parents=True, exist_ok=True)
                db = await aiosqlite.connect(self._path)
                # WAL lets readers run while a writer commits.
                await db.execute("PRAGMA journal_mode=WAL")
                await db.execute("PRAGMA synchronous=NORMAL")
                await db.executescript(_SQLITE_SCHEMA)
                await db.commit()
                self._db = db
        return self._db

    async def load(self, conversation_id: str) -> list[Turn]:
        db = await self._connection()
        async with db.execute(
            "SELECT user_text, assistant_text FROM turns WHERE conversation_id = ? ORDER BY seq", (conversation_id,)
        ) as cursor:
            return [Turn(user=user, assistant=assistant) async for user, assistant in cursor]

    async def append(self, conversation_id: str, turn: Turn, *, event_id: str) -> bool:
        db = await self._connection()
        cursor = await db.execute(
            "INSERT INTO turns (conversation_id, event_id, user_text, assistant_text) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (event_id) DO NOTHING",
            (conversation_id, event_id, turn.user, turn.assistant),
        )
        await db.commit()
        return cursor.rowcount == 1

    async def get_summary(self, conversation_id: str) -> Summary | None:
        db = await self._connection()
        async with db.execute(
            "SELECT text, turns_covered FROM summaries WHERE conversation_id = ?", (conversation_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else Summary(text=row[0], turns_covered=row[1])

    async def set_summary(self, conversation_id: str, summary: Summary) -> None:
        db = await self._connection()
        await db.execute(
            "INSERT INTO summaries (conversation_id, text, turns_covered) VALUES (?, ?, ?)"
            " ON CONFLICT (conversation_id) DO UPDATE SET text = excluded.text, turns_covered = excluded.turns_covered"
            " WHERE excluded.turns_covered >= summaries.turns_covered",
            (conversation_id, summary.text, summary.turns_covered),
        )
        await db.commit()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None


POSTGRES_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE relaychain_turns (
        seq BIGSERIAL PRIMARY KEY,
        conversation_id TEXT NOT NULL,
        event_id TEXT NOT NULL UNIQUE,
        user_text TEXT NOT NULL,
        assistant_text TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX relaychain_turns_by_conversation ON relaychain_turns (conversation_id, seq);
    CREATE TABLE relaychain_summaries (
        conversation_id TEXT PRIMARY KEY,
        text TEXT NOT NULL,
        turns_covered INTEGER NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    """,
)
"""Schema versions of the conversation store, applied in order by `migrate()`; append, never edit."""


class PostgresConversationStore:
    """History in PostgreSQL through an asyncpg pool; run `migrate()` (or `relaychain db migrate`) first."""

    def __init__(self, dsn: str, *, min_pool: int = 1, max_pool: int = 10) -> None:
        self._dsn = dsn
        self._min_pool = min_pool
        self._max_pool = max_pool
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _connections(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                import asyncpg

                self._pool = await asyncpg.create_pool(self._dsn, min_size=self._min_pool, max_size=self._max_pool)
        return self._pool

    async def migrate(self) -> int:
        """Apply the schema versions not yet applied; returns how many were. Safe to run concurrently."""
        pool = await self._connections()
        return await apply_migrations(pool, "conversation_store", POSTGRES_MIGRATIONS)

    async def load(self, conversation_id: str) -> list[Turn]:
        pool = await self._connections()
        rows = await pool.fetch(
            "SELECT user_text, assistant_text FROM relaychain_turns WHERE conversation_id = $1 ORDER BY seq",
            conversation_id,
        )
        return [Turn(user=row["user_text"], assistant=row["assistant_text"]) for row in rows]

    async def append(self, conversation_id: str, turn: Turn, *, event_id: str) -> bool:
        pool = await self._connections()
        status = await pool.execute(
            "INSERT INTO relaychain_turns (conversation_id, event_id, user_text, assistant_text)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING",
            conversation_id,
            event_id,
            turn.user,
            turn.assistant,
        )
        return status == "INSERT 0 1"

    async def get_summary(self, conversation_id: str) -> Summary | None:
        pool = await self._connections()
        row = await pool.fetchrow(
            "SELECT text, turns_covered FROM relaychain_summaries WHERE conversation_id = $1", conversation_id
        )
        return None if row is None else Summary(text=row["text"], turns_covered=row["turns_covered"])

    async def set_summary(self, conversation_id: str, summary: Summary) -> None:
        pool = await self._connections()
        await pool.execute(
            "INSERT INTO relaychain_summaries (conversation_id, text, turns_covered) VALUES ($1, $2, $3)"
            " ON CONFLICT (conversation_id) DO UPDATE"
            " SET text = excluded.text, turns_covered = excluded.turns_covered, updated_at = now()"
            " WHERE excluded.turns_covered >= relaychain_summaries.turns_covered",
            conversation_id,
            summary.text,
            summary.turns_covered,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def apply_migrations(pool: asyncpg.Pool, component: str, migrations: tuple[str, ...]) -> int:
    """Apply `migrations[n:]` for `component`, where n is how many were already applied.

    An advisory lock serialises concurrent migrators (several pods starting at once).
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('relaychain_migrations'))")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS relaychain_migrations ("
            " component TEXT NOT NULL, version INTEGER NOT NULL,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"
        )
        applied = await conn.fetchval(
            "SELECT coalesce(max(version), 0) FROM relaychain_migrations WHERE component = $1", component
        )
        for version, statement in enumerate(migrations[applied:], start=applied + 1):
            await conn.execute(statement)
            await conn.execute(
                "INSERT INTO relaychain_migrations (component, version) VALUES ($1, $2)", component, version
            )
        return len(migrations) - applied
