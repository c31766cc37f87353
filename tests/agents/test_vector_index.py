"""One contract for every VectorIndex: the numpy index and pgvector must behave the same."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from relaychain.agents.stores.vectors import (
    IndexedChunk,
    NumpyVectorIndex,
    PgVectorIndex,
    VectorIndex,
)

DIM = 8
IndexFactory = Callable[[], Awaitable[VectorIndex]]


@pytest.fixture(params=["numpy", pytest.param("pgvector", marks=pytest.mark.postgres)])
async def open_index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[IndexFactory]:
    """Each call opens the same index afresh, like a restarted process."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    opened: list[VectorIndex] = []

    async def factory() -> VectorIndex:
        index: VectorIndex
        if request.param == "numpy":
            index = NumpyVectorIndex(tmp_path / name)
        else:
            index = PgVectorIndex(request.getfixturevalue("postgres_dsn"), name, DIM)
        opened.append(index)
        return index

    yield factory
    if request.param == "pgvector":
        await opened[-1].drop()  # type: ignore[attr-defined]
    for index in opened:
        await index.close()


def unit(*values: float) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


def chunks(source: str, n: int) -> list[IndexedChunk]:
    return [
        IndexedChunk(text=f"{source} part {i}", source=source, location=f"page {i + 1}", start=10 * i, end=10 * i + 9)
        for i in range(n)
    ]


async def test_empty_index_finds_nothing(open_index: IndexFactory) -> None:
    index = await open_index()
    assert await index.search(unit(1), 3) == []
    assert await index.sources() == {}


async def test_search_ranks_by_similarity_and_returns_metadata(open_index: IndexFactory) -> None:
    index = await open_index()
    await index.replace_source("a.md", "h1", chunks("a.md", 3), np.stack([unit(1), unit(0, 1), unit(1, 1)]))
    await index.replace_source("b.pdf", "h2", chunks("b.pdf", 1), np.stack([unit(0, 0, 1)]))
    hits = await index.search(unit(1, 0.2), 2)
    assert [hit.chunk.text for hit in hits] == ["a.md part 0", "a.md part 2"]
    assert hits[0].score == pytest.approx(float(unit(1) @ unit(1, 0.2)), abs=1e-5)
    assert hits[0].score >= hits[1].score
    assert hits[0].chunk == IndexedChunk(text="a.md part 0", source="a.md", location="page 1", start=0, end=9)
    assert len(await index.search(unit(1), 50)) == 4


async def test_replace_source_swaps_chunks_and_hash(open_index: IndexFactory) -> None:
    index = await open_index()
    await index.replace_source("a.md", "old", chunks("a.md", 3), np.stack([unit(1)] * 3))
    await index.replace_source("b.md", "b", chunks("b.md", 1), np.stack([unit(0, 1)]))
    await index.replace_source("a.md", "new", [IndexedChunk(text="fresh", source="a.md")], np.stack([unit(1)]))
    assert await index.sources() == {"a.md": "new", "b.md": "b"}
    assert [hit.chunk.text for hit in await index.search(unit(1), 10)] == ["fresh", "b.md part 0"]


async def test_delete_source_removes_its_chunks(open_index: IndexFactory) -> None:
    index = await open_index()
    await index.replace_source("a.md", "a", chunks("a.md", 2), np.stack([unit(1)] * 2))
    await index.replace_source("b.md", "b", chunks("b.md", 1), np.stack([unit(1)]))
    await index.delete_source("a.md")
    await index.delete_source("never-indexed.md")
    assert await index.sources() == {"b.md": "b"}
    assert [hit.chunk.source for hit in await index.search(unit(1), 10)] == ["b.md"]


async def test_wrong_shapes_are_rejected(open_index: IndexFactory) -> None:
    index = await open_index()
    await index.replace_source("a.md", "a", chunks("a.md", 1), np.stack([unit(1)]))
    with pytest.raises(ValueError):
        await index.replace_source("b.md", "b", chunks("b.md", 2), np.stack([unit(1)]))
    with pytest.raises(ValueError):
        await index.replace_source("b.md", "b", chunks("b.md", 1), np.ones((1, DIM + 1), dtype=np.float32))


async def test_index_survives_reopening(open_index: IndexFactory) -> None:
    index = await open_index()
    await index.replace_source("a.md", "a", chunks("a.md", 2), np.stack([unit(1), unit(0, 1)]))
    await index.flush()
    await index.close()
    reopened = await open_index()
    assert await reopened.sources() == {"a.md": "a"}
    assert [hit.chunk.text for hit in await reopened.search(unit(0, 1), 1)] == ["a.md part 1"]
