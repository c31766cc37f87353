"""One contract for every VectorIndex: the numpy index and pgvector must behave the same."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from relaychain.agents.stores.lexical import terms
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


def sheet(source: str, *texts: str) -> list[IndexedChunk]:
    return [
        IndexedChunk(text=text, source=source, start=i * 100, end=i * 100 + len(text)) for i, text in enumerate(texts)
    ]


async def fill_sheets(index: VectorIndex) -> None:
    await index.replace_source(
        "yunque.md",
        "y",
        sheet("yunque.md", "云雀7 电池：72 kWh 三元锂电池", "后备厢：560 升"),
        np.stack([unit(1), unit(0, 1)]),
    )
    await index.replace_source(
        "kestrel.txt",
        "k",
        sheet("kestrel.txt", "Kestrel Brio Urban turning circle 9.4 m", "Battery: 42 kWh LFP"),
        np.stack([unit(0, 0, 1), unit(0, 0, 0, 1)]),
    )


async def test_lexical_search_ranks_by_bm25_over_words_and_chinese_bigrams(open_index: IndexFactory) -> None:
    index = await open_index()
    await fill_sheets(index)
    assert [h.chunk.text for h in await index.search_lexical(terms("turning circle of the Kestrel"), 5)] == [
        "Kestrel Brio Urban turning circle 9.4 m"
    ]
    chinese = await index.search_lexical(terms("雲雀7的電池容量"), 5)  # traditional query, simplified sheet
    assert chinese[0].chunk.source == "yunque.md" and chinese[0].chunk.start == 0
    battery = await index.search_lexical(terms("battery kWh"), 5)
    assert battery[0].chunk.text == "Battery: 42 kWh LFP", "two shared terms beat one"
    assert [h.score for h in battery] == sorted((h.score for h in battery), reverse=True)
    assert await index.search_lexical(terms("nothing shared"), 5) == []
    assert await index.search_lexical([], 5) == []


async def test_lexical_search_follows_replaced_and_deleted_sources(open_index: IndexFactory) -> None:
    index = await open_index()
    await fill_sheets(index)
    assert await index.search_lexical(terms("Kestrel"), 5)
    await index.replace_source("kestrel.txt", "k2", sheet("kestrel.txt", "Range: 333 km"), np.stack([unit(1)]))
    assert await index.search_lexical(terms("Kestrel"), 5) == []
    assert [h.chunk.text for h in await index.search_lexical(terms("range km"), 5)] == ["Range: 333 km"]
    await index.delete_source("yunque.md")
    assert await index.search_lexical(terms("后备厢"), 5) == []


async def test_lexical_scores_are_the_same_on_every_index(open_index: IndexFactory, tmp_path: Path) -> None:
    """pgvector computes BM25 in SQL; it must agree with the in-memory postings."""
    index = await open_index()
    reference = NumpyVectorIndex(tmp_path / "reference")
    for target in (index, reference):
        await fill_sheets(target)
    query = terms("Kestrel battery 电池 kWh 升")
    got = [(h.chunk.text, round(h.score, 4)) for h in await index.search_lexical(query, 10)]
    expected = [(h.chunk.text, round(h.score, 4)) for h in await reference.search_lexical(query, 10)]
    assert got == expected and len(got) == 4
