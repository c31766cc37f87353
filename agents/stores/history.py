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

from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from relaychain.agents.stores.connections import PostgresPool, SqliteFile
from relaychain.schemas import ChatMessage


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
    async def load(self, conversation_id: str, *, newest: int | None = None, after: int = 0) -> list[Turn]:
        """The conversation's turns oldest first: those after its first `after`, of those the `newest` last ones.

        Both bounds are applied in the database, so a long conversation costs
        what the memory policy keeps, not its length.
        """
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
        self._file = SqliteFile(path, _SQLITE_SCHEMA)

    async def load(self, conversation_id: str, *, newest: int | None = None, after: int = 0) -> list[Turn]:
        db = await self._file.connection()
        # Newest first under the limits (LIMIT -1: none), put back in order here.
        async with db.execute(
            "SELECT user_text, assistant_text FROM ("
            " SELECT seq, user_text, assistant_text FROM turns WHERE conversation_id = ?"
            " ORDER BY seq LIMIT -1 OFFSET ?"
            ") ORDER BY seq DESC LIMIT ?",
            (conversation_id, after, -1 if newest is None else newest),
        ) as cursor:
            rows = await cursor.fetchall()
        return [Turn(user=user, assistant=assistant) for user, assistant in reversed(list(rows))]

    async def append(self, conversation_id: str, turn: Turn, *, event_id: str) -> bool:
        db = await self._file.connection()
        cursor = await db.execute(
            "INSERT INTO turns (conversation_id, event_id, user_text, assistant_text) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (event_id) DO NOTHING",
            (conversation_id, event_id, turn.user, turn.assistant),
        )
        return cursor.rowcount == 1

    async def get_summary(self, conversation_id: str) -> Summary | None:
        db = await self._file.connection()
        async with db.execute(
            "SELECT text, turns_covered FROM summaries WHERE conversation_id = ?", (conversation_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else Summary(text=row[0], turns_covered=row[1])

    async def set_summary(self, conversation_id: str, summary: Summary) -> None:
        db = await self._file.connection()
        await db.execute(
            "INSERT INTO summaries (conversation_id, text, turns_covered) VALUES (?, ?, ?)"
            " ON CONFLICT (conversation_id) DO UPDATE SET text = excluded.text, turns_covered = excluded.turns_covered"
            " WHERE excluded.turns_covered >= summaries.turns_covered",
            (conversation_id, summary.text, summary.turns_covered),
        )

    async def close(self) -> None:
        await self._file.close()


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
        self._postgres = PostgresPool(dsn, min_size=min_pool, max_size=max_pool)

    async def migrate(self) -> int:
        """Apply the schema versions not yet applied; returns how many were. Safe to run concurrently."""
        return await self._postgres.migrate("conversation_store", POSTGRES_MIGRATIONS)

    async def load(self, conversation_id: str, *, newest: int | None = None, after: int = 0) -> list[Turn]:
        pool = await self._postgres.pool()
        # Newest first under the limits (LIMIT NULL: none), put back in order here.
        rows = await pool.fetch(
            "SELECT user_text, assistant_text FROM ("
            " SELECT seq, user_text, assistant_text FROM relaychain_turns WHERE conversation_id = $1"
            " ORDER BY seq OFFSET $2"
            ") AS fresh ORDER BY seq DESC LIMIT $3",
            conversation_id,
            after,
            newest,
        )
        return [Turn(user=row["user_text"], assistant=row["assistant_text"]) for row in reversed(list(rows))]

    async def append(self, conversation_id: str, turn: Turn, *, event_id: str) -> bool:
        pool = await self._postgres.pool()
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
        pool = await self._postgres.pool()
        row = await pool.fetchrow(
            "SELECT text, turns_covered FROM relaychain_summaries WHERE conversation_id = $1", conversation_id
        )
        return None if row is None else Summary(text=row["text"], turns_covered=row["turns_covered"])

    async def set_summary(self, conversation_id: str, summary: Summary) -> None:
        pool = await self._postgres.pool()
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
        await self._postgres.close()
