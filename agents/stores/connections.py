"""Lazily opened database handles the stores share: one SQLite file, one asyncpg pool, schema migrations."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiosqlite
    import asyncpg

log = logging.getLogger(__name__)


_OPEN_ATTEMPTS = 5

IDENTITY_CHECK_S = 0.25
"""How often the path is compared with the open file. A `stat` per statement cost more than the statement's
own share of the event loop (the call hands the GIL to the database threads and waits to get it back)."""


class SqliteFile:
    """One SQLite connection in WAL mode (readers run while a writer commits), in autocommit mode:
    each statement commits when it returns; several statements that must commit together take an
    explicit `BEGIN`.

    `schema` runs on every open (idempotent DDL); `migrations[n:]` run once each,
    counted in the file's `user_version` (idempotent too: two processes may open
    a new file at once). A locked database is waited on for
    `busy_timeout_s` before `database is locked` is raised.

    On use, at most every `IDENTITY_CHECK_S`, and on close, the path is
    compared with the open file (device, inode: one `stat`). A file removed
    while open is restored at its path from the open connection (`VACUUM
    INTO`), so what it held, rows written since the removal included, is not
    lost with it; a file replaced by another is reopened, its schema created
    when missing. Only what is written in the moment between a replacement and
    the next check goes to the replaced file. A WARNING says what happened.
    """

    def __init__(
        self, path: str | Path, schema: str = "", *, migrations: tuple[str, ...] = (), busy_timeout_s: float = 5.0
    ) -> None:
        self.path = Path(path)
        self._schema = schema
        self._migrations = migrations
        self._busy_timeout_s = busy_timeout_s
        self._db: aiosqlite.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._wal_identity: tuple[int, int] | None = None
        self._opening = asyncio.Lock()
        self._checked_at = 0.0

    async def connection(self) -> aiosqlite.Connection:
        if self._db is not None:
            now = time.monotonic()
            if now - self._checked_at < IDENTITY_CHECK_S:
                return self._db
            self._checked_at = now
            if self._identity == _identity_of(self.path):
                return self._db
        async with self._opening:
            if self._db is not None and self._identity != _identity_of(self.path):
                await self._replace_moved_file(self._db)
            if self._db is None:
                self._db = await self._open()
        return self._db

    async def _open(self) -> aiosqlite.Connection:
        # Two processes creating one file can deadlock on its locks (one switching it to WAL, one migrating);
        # SQLite then answers "locked" at once instead of waiting. A moment later the file is set up.
        for attempt in range(_OPEN_ATTEMPTS):
            try:
                return await self._open_once()
            except sqlite3.OperationalError as exc:
                if attempt == _OPEN_ATTEMPTS - 1 or "locked" not in str(exc):
                    raise
                await asyncio.sleep(0.02 * 2**attempt)
        raise AssertionError("unreachable: the loop returns or raises")

    async def _open_once(self) -> aiosqlite.Connection:
        import aiosqlite

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: a single write statement is its own transaction (triggers included), durable when it
        # returns, in one hop to the connection's thread; `execute` then `commit` took two.
        db = await aiosqlite.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
        try:
            # WAL is a property of the file: set it once. Setting it again needs a lock that another opener's
            # migration may hold, and that wait is not covered by the busy timeout ("database is locked").
            async with db.execute("PRAGMA journal_mode") as cursor:
                mode = await cursor.fetchone()
            if not mode or str(mode[0]).lower() != "wal":
                await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            if self._schema:
                await db.executescript(self._schema)
            await self._migrate(db)
        except BaseException:
            await db.close()
            raise
        self._identity = _identity_of(self.path)
        self._wal_identity = _identity_of(self._wal)
        self._checked_at = time.monotonic()
        return db

    @property
    def _wal(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        for version, script in enumerate(self._migrations, start=1):
            if await _user_version(db) >= version:
                continue
            # Under the write lock the version is read again: two processes may open a new file at once, and
            # a script (ALTER TABLE, say) must run once. Statement by statement: executescript would commit first.
            await db.execute("BEGIN IMMEDIATE")
            try:
                if await _user_version(db) < version:
                    for statement in _statements(script):
                        await db.execute(statement)
                    await db.execute(f"PRAGMA user_version = {version}")
                await db.commit()
            except BaseException:
                await db.rollback()
                raise

    async def _replace_moved_file(self, db: aiosqlite.Connection) -> None:
        self._db = None
        if self._wal_identity is not None and _identity_of(self._wal) == self._wal_identity:
            # Our log still sits at the path's -wal name: emptied into the old file, so that the file now
            # at the path never replays it as its own.
            async with db.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cursor:
                await cursor.fetchall()
        if _identity_of(self.path) is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                await db.execute("VACUUM INTO ?", (str(self.path),))
                log.warning("%s was removed while open; restored it from the open connection", self.path)
            except (sqlite3.Error, OSError) as exc:  # another process restored it first, or the folder is gone
                log.error(
                    "%s was removed while open and could not be restored (%s); reopening: rows it held are not at the path",
                    self.path,
                    exc,
                )
        else:
            log.warning("%s was replaced by another file while open; reopening it", self.path)
        await db.close()

    async def close(self) -> None:
        async with self._opening:
            if self._db is not None and self._identity != _identity_of(self.path):
                # Rows written since the last check are restored at the path before the connection goes.
                await self._replace_moved_file(self._db)
            if self._db is not None:
                await self._db.close()
                self._db = None


def _statements(script: str) -> list[str]:
    """The SQL statements of `script`, trigger bodies kept whole (sqlite3 knows where a statement ends)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        # The last statement may go without its semicolon, as executescript allows.
        if not sqlite3.complete_statement(buffer + ";"):
            raise ValueError(f"incomplete SQL statement in a migration: {buffer.strip()[:80]!r}")
        statements.append(buffer.strip())
    return statements


async def _user_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


def _identity_of(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


class PostgresPool:
    """An asyncpg pool opened on first use; `init` runs on every new connection (type codecs)."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        init: Callable[[asyncpg.Connection], Coroutine[Any, Any, None]] | None = None,
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
        applied: int = await conn.fetchval(
            "SELECT coalesce(max(version), 0) FROM relaychain_migrations WHERE component = $1", component
        )
        for version, statement in enumerate(migrations[applied:], start=applied + 1):
            await conn.execute(statement)
            await conn.execute(
                "INSERT INTO relaychain_migrations (component, version) VALUES ($1, $2)", component, version
            )
        return len(migrations) - applied
