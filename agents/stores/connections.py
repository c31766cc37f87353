"""Lazily opened database handles the stores share: one SQLite file, one asyncpg pool, schema migrations."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiosqlite
    import asyncpg


class SqliteFile:
    """One SQLite connection in WAL mode (readers run while a writer commits); `schema` runs on first open."""

    def __init__(self, path: str | Path, schema: str) -> None:
        self.path = Path(path)
        self._schema = schema
        self._db: aiosqlite.Connection | None = None
        self._opening = asyncio.Lock()

    async def connection(self) -> aiosqlite.Connection:
        if self._db is not None:
            return self._db
        async with self._opening:
            if self._db is None:
                import aiosqlite

                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = await aiosqlite.connect(self.path)
                await db.execute("PRAGMA journal_mode=WAL")
                await db.execute("PRAGMA synchronous=NORMAL")
                await db.executescript(self._schema)
                await db.commit()
                self._db = db
        return self._db

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None


class PostgresPool:
    """An asyncpg pool opened on first use; `init` runs on every new connection (type codecs)."""

    def __init__(
        self, dsn: str, *, min_size: int = 1, max_size: int = 10, init: Callable[[Any], Awaitable[None]] | None = None
    ) -> None:
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._init = init
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                import asyncpg

                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=self._min_size, max_size=self._max_size, init=self._init
                )
        return self._pool

    async def migrate(self, component: str, migrations: tuple[str, ...]) -> int:
        return await apply_migrations(await self.pool(), component, migrations)

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
