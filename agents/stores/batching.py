"""Writes that arrive while one is on its way to the database go together, in one statement and one hop.

A SQLite connection runs one statement at a time on its own thread; each
call is a round trip through that thread and the GIL. With many jobs in
flight, the calls that queue behind a running one are sent as one batch when
it returns (group commit): the same rows, one statement, one commit. Every
caller still returns only once its own row is committed, and a failure
reaches every caller of the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    import aiosqlite

__all__ = ["Batched", "insert_new"]

T = TypeVar("T")
R = TypeVar("R")


class Batched(Generic[T, R]):
    """`await batched(item)` runs `run([item, ...])` with whatever else is waiting; `run` answers item by item."""

    def __init__(self, run: Callable[[list[T]], Awaitable[Sequence[R]]], *, max_batch: int = 256) -> None:
        self._run = run
        self._max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._drain: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._drain is None:
            # A task of its own: a caller cancelled mid-batch must not strand the others.
            self._drain = asyncio.create_task(self._send())
        return await future

    async def _send(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                try:
                    results = await self._run([item for item, _ in batch])
                except Exception as exc:  # every caller of the batch gets the failure, raised from its own await
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._drain = None


async def insert_new(db: aiosqlite.Connection, table: str, columns: str, rows: Sequence[tuple[Any, ...]]) -> list[bool]:
    """Insert `rows` in one statement, keeping what is there; whether each row was new, by its first column (the key).

    The same key twice in one batch: the first row is the new one, the second finds it, as from another writer.
    """
    key = columns.split(",")[0].strip()
    placeholders = "(" + ", ".join("?" * len(rows[0])) + ")"
    new = {
        found
        for (found,) in await db.execute_fetchall(
            f"INSERT INTO {table} ({columns}) VALUES {', '.join([placeholders] * len(rows))}"
            f" ON CONFLICT ({key}) DO NOTHING RETURNING {key}",
            [value for row in rows for value in row],
        )
    }
    inserted = []
    for row in rows:
        inserted.append(row[0] in new)
        new.discard(row[0])
    return inserted
