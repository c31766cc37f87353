"""One contract for every ConversationStore: SQLite and PostgreSQL must behave the same."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from relaychain.agents.stores.history import (
    ConversationStore,
    PostgresConversationStore,
    SqliteConversationStore,
    Summary,
    Turn,
)

StoreFactory = Callable[[], Awaitable[ConversationStore]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Opens a fresh handle on the same underlying store each call, like a restarted worker."""
    opened: list[ConversationStore] = []

    async def factory() -> ConversationStore:
        store: ConversationStore
        if request.param == "sqlite":
            store = SqliteConversationStore(tmp_path / "memory.sqlite3")
        else:
            pg = PostgresConversationStore(request.getfixturevalue("postgres_dsn"))
            await pg.migrate()
            store = pg
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


def conversation() -> str:
    # PostgreSQL is shared by the session: each test uses its own conversations.
    return uuid.uuid4().hex


def turn(n: int) -> Turn:
    return Turn(user=f"question {n}", assistant=f"answer {n}")


async def test_unknown_conversation_is_empty(open_store: StoreFactory) -> None:
    store = await open_store()
    assert await store.load(conversation()) == []
    assert await store.get_summary(conversation()) is None


async def test_turns_come_back_in_order_per_conversation(open_store: StoreFactory) -> None:
    store = await open_store()
    first, second = conversation(), conversation()
    for n in range(5):
        await store.append(first, turn(n), event_id=f"{first}-{n}")
        await store.append(second, turn(100 + n), event_id=f"{second}-{n}")
    assert await store.load(first) == [turn(n) for n in range(5)]
    assert await store.load(second) == [turn(100 + n) for n in range(5)]


async def test_append_is_idempotent_on_event_id(open_store: StoreFactory) -> None:
    store = await open_store()
    cid = conversation()
    assert await store.append(cid, turn(1), event_id=f"{cid}-e1") is True
    assert await store.append(cid, turn(1), event_id=f"{cid}-e1") is False
    assert await store.load(cid) == [turn(1)]


async def test_unicode_and_long_text_survive(open_store: StoreFactory) -> None:
    store = await open_store()
    cid = conversation()
    long_turn = Turn(user="续航是多少？" * 500, assistant='{"answer": "约 705 km (CLTC) — ✓"}')
    await store.append(cid, long_turn, event_id=f"{cid}-u")
    assert await store.load(cid) == [long_turn]


async def test_summary_only_moves_forward(open_store: StoreFactory) -> None:
    store = await open_store()
    cid = conversation()
    await store.set_summary(cid, Summary(text="first four", turns_covered=4))
    await store.set_summary(cid, Summary(text="stale, from a slower worker", turns_covered=2))
    assert await store.get_summary(cid) == Summary(text="first four", turns_covered=4)
    await store.set_summary(cid, Summary(text="first six", turns_covered=6))
    assert await store.get_summary(cid) == Summary(text="first six", turns_covered=6)


async def test_everything_survives_reopening(open_store: StoreFactory) -> None:
    cid = conversation()
    store = await open_store()
    await store.append(cid, turn(1), event_id=f"{cid}-1")
    await store.set_summary(cid, Summary(text="so far", turns_covered=1))
    await store.close()
    reopened = await open_store()
    assert await reopened.load(cid) == [turn(1)]
    assert await reopened.get_summary(cid) == Summary(text="so far", turns_covered=1)
    assert await reopened.append(cid, turn(1), event_id=f"{cid}-1") is False


@pytest.mark.postgres
async def test_migrate_is_repeatable(postgres_dsn: str) -> None:
    store = PostgresConversationStore(postgres_dsn)
    try:
        await store.migrate()
        assert await store.migrate() == 0
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("newest", "after", "expected"),
    [(None, 0, range(10)), (3, 0, range(7, 10)), (None, 4, range(4, 10)), (3, 8, range(8, 10)), (20, 2, range(2, 10))],
)
async def test_loads_are_bounded_in_the_database(
    open_store: StoreFactory, newest: int | None, after: int, expected: range
) -> None:
    store = await open_store()
    cid, other = conversation(), conversation()
    for n in range(10):
        await store.append(cid, turn(n), event_id=f"{cid}-{n}")
        await store.append(other, turn(100 + n), event_id=f"{other}-{n}")
    assert await store.load(cid, newest=newest, after=after) == [turn(n) for n in expected]
    assert await store.load(cid, newest=0) == []
