"""Vector indexes: chunks with their embeddings, searched by inner product (the vectors are unit length).

Each indexed file is a *source* with a content hash. `replace_source` swaps
all of a source's chunks and its hash at once, so an interrupted re-index
never leaves half a file; the indexer compares hashes to skip unchanged
files and `delete_source` removes files that are gone.

Both kinds also answer lexical queries (`search_lexical`, BM25 over the
terms of `lexical.terms`), which the retriever fuses with the vector ranking.

`NumpyVectorIndex` keeps one float32 matrix in memory, persisted under the
data dir (`vectors.npy` + `chunks.json`), written atomically on `flush()`;
its BM25 postings are rebuilt in memory after a change, at the next lexical
query. `PgVectorIndex` keeps chunks in PostgreSQL with pgvector and an HNSW
index, and each chunk's terms in a table beside them, scored in SQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from relaychain.agents.stores.lexical import K1, B, Bm25, terms

if TYPE_CHECKING:
    import asyncpg

__all__ = ["Hit", "IndexedChunk", "NumpyVectorIndex", "PgVectorIndex", "VectorIndex"]


@dataclass(frozen=True)
class IndexedChunk:
    text: str
    source: str
    location: str = ""
    start: int = 0
    end: int = 0


@dataclass(frozen=True)
class Hit:
    chunk: IndexedChunk
    score: float


class VectorIndex(Protocol):
    async def sources(self) -> dict[str, str]:
        """Indexed sources and their content hashes."""
        ...

    async def replace_source(
        self, source: str, content_hash: str, chunks: Sequence[IndexedChunk], vectors: np.ndarray
    ) -> None: ...

    async def delete_source(self, source: str) -> None: ...

    async def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        """The k chunks with the highest inner product with `vector`, best first."""
        ...

    async def search_lexical(self, query: Sequence[str], k: int) -> list[Hit]:
        """The k chunks with the highest BM25 score for the query terms (`lexical.terms`), best first."""
        ...

    async def flush(self) -> None:
        """Make everything written so far durable."""
        ...

    async def close(self) -> None: ...


def _check_vectors(chunks: Sequence[IndexedChunk], vectors: np.ndarray, dim: int | None) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(chunks):
        raise ValueError(f"need one vector per chunk: {len(chunks)} chunks, vectors of shape {vectors.shape}")
    if dim is not None and vectors.shape[1] != dim:
        raise ValueError(f"this index holds {dim}-dimensional vectors, got {vectors.shape[1]}")
    return vectors


class NumpyVectorIndex:
    """In-process exact search; fine to a few hundred thousand chunks."""

    OFFLOAD_ROWS = 20_000
    """Searches over more rows than this run in a thread so the event loop keeps moving."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._chunks: list[IndexedChunk] = []
        self._hashes: dict[str, str] = {}
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._dirty = False
        self._bm25: Bm25 | None = None
        meta = self.directory / "chunks.json"
        if meta.exists():
            saved = json.loads(meta.read_text(encoding="utf-8"))
            self._hashes = saved["sources"]
            self._chunks = [IndexedChunk(**chunk) for chunk in saved["chunks"]]
            self._matrix = np.load(self.directory / "vectors.npy")

    @property
    def dim(self) -> int | None:
        return int(self._matrix.shape[1]) or None

    async def sources(self) -> dict[str, str]:
        return dict(self._hashes)

    async def replace_source(
        self, source: str, content_hash: str, chunks: Sequence[IndexedChunk], vectors: np.ndarray
    ) -> None:
        vectors = _check_vectors(chunks, vectors, self.dim)
        keep = np.fromiter((chunk.source != source for chunk in self._chunks), dtype=bool, count=len(self._chunks))
        base = self._matrix[keep] if self._matrix.shape[0] else np.zeros((0, vectors.shape[1]), dtype=np.float32)
        self._matrix = np.concatenate([base, vectors]) if base.shape[0] else vectors.copy()
        self._chunks = [chunk for chunk, kept in zip(self._chunks, keep, strict=True) if kept] + list(chunks)
        self._hashes[source] = content_hash
        self._dirty = True
        self._bm25 = None

    async def delete_source(self, source: str) -> None:
        if source not in self._hashes:
            return
        keep = np.fromiter((chunk.source != source for chunk in self._chunks), dtype=bool, count=len(self._chunks))
        self._matrix = self._matrix[keep]
        self._chunks = [chunk for chunk, kept in zip(self._chunks, keep, strict=True) if kept]
        del self._hashes[source]
        self._dirty = True
        self._bm25 = None

    async def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        if len(self._chunks) > self.OFFLOAD_ROWS:
            return await asyncio.to_thread(self._search, vector, k)
        return self._search(vector, k)

    def _search(self, vector: np.ndarray, k: int) -> list[Hit]:
        if not self._chunks or k <= 0:
            return []
        scores = self._matrix @ np.asarray(vector, dtype=np.float32)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Hit(chunk=self._chunks[i], score=float(scores[i])) for i in top]

    async def search_lexical(self, query: Sequence[str], k: int) -> list[Hit]:
        if self._bm25 is None or len(self._chunks) > self.OFFLOAD_ROWS:
            return await asyncio.to_thread(self._search_lexical, query, k)
        return self._search_lexical(query, k)

    def _search_lexical(self, query: Sequence[str], k: int) -> list[Hit]:
        if not self._chunks or k <= 0 or not query:
            return []
        bm25 = self._bm25
        if bm25 is None:
            bm25 = self._bm25 = Bm25([terms(chunk.text) for chunk in self._chunks])
        scores = bm25.scores(query)
        matched = np.flatnonzero(scores > 0)
        top = matched[np.argsort(-scores[matched], kind="stable")[:k]]
        return [Hit(chunk=self._chunks[i], score=float(scores[i])) for i in top]

    async def flush(self) -> None:
        if self._dirty:
            await asyncio.to_thread(self._write)
            self._dirty = False

    def _write(self) -> None:
        # Write beside, then rename: a crash mid-write leaves the previous index intact.
        self.directory.mkdir(parents=True, exist_ok=True)
        vectors_tmp = self.directory / "vectors.tmp.npy"
        meta_tmp = self.directory / "chunks.tmp.json"
        np.save(vectors_tmp, self._matrix)
        meta = {"sources": self._hashes, "chunks": [asdict(chunk) for chunk in self._chunks]}
        meta_tmp.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        os.replace(vectors_tmp, self.directory / "vectors.npy")
        os.replace(meta_tmp, self.directory / "chunks.json")

    async def close(self) -> None:
        await self.flush()


_INDEX_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


def _encode_vector(vector: np.ndarray) -> bytes:
    """pgvector's binary format: int16 dim, int16 unused, float32 big-endian values."""
    values = np.asarray(vector, dtype=">f4")
    return struct.pack(">HH", values.shape[0], 0) + values.tobytes()


def _decode_vector(data: bytes) -> np.ndarray:
    dim, _ = struct.unpack_from(">HH", data)
    return np.frombuffer(data, dtype=">f4", count=dim, offset=4).astype(np.float32)


class PgVectorIndex:
    """Chunks in PostgreSQL (`rc_index_<name>_*` tables) with an HNSW index on inner product."""

    def __init__(self, dsn: str, name: str, dim: int, *, ef_search: int = 100, max_pool: int = 10) -> None:
        if not _INDEX_NAME.match(name):
            raise ValueError(f"index name {name!r}: lowercase letters, digits and _ only, starting with a letter")
        self._dsn = dsn
        self.name = name
        self.dim = dim
        self._ef_search = ef_search
        self._max_pool = max_pool
        self._chunks_table = f"rc_index_{name}_chunks"
        self._sources_table = f"rc_index_{name}_sources"
        self._terms_table = f"rc_index_{name}_terms"
        self._pool: asyncpg.Pool | None = None
        self._tables_ready = False
        self._opening = asyncio.Lock()

    async def _connections(self) -> asyncpg.Pool:
        if self._pool is not None and self._tables_ready:
            return self._pool
        async with self._opening:
            if self._pool is None:
                import asyncpg

                first = await asyncpg.connect(self._dsn)
                try:
                    await first.execute("CREATE EXTENSION IF NOT EXISTS vector")
                finally:
                    await first.close()
                self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._max_pool, init=self._setup)
            if not self._tables_ready:
                await self._create_tables()
                self._tables_ready = True
        return self._pool

    async def _setup(self, conn: asyncpg.Connection) -> None:
        await conn.set_type_codec(
            "vector", schema="public", encoder=_encode_vector, decoder=_decode_vector, format="binary"
        )
        await conn.execute(f"SET hnsw.ef_search = {int(self._ef_search)}")

    async def _create_tables(self) -> None:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._chunks_table)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._sources_table} (source TEXT PRIMARY KEY, content_hash TEXT NOT NULL)"
            )
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._chunks_table} ("
                " id BIGSERIAL PRIMARY KEY, source TEXT NOT NULL, text TEXT NOT NULL, location TEXT NOT NULL,"
                f" start_offset INTEGER NOT NULL, end_offset INTEGER NOT NULL, embedding vector({int(self.dim)}) NOT NULL)"
            )
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {self._chunks_table}_source ON {self._chunks_table} (source)"
            )
            await conn.execute(
                f"ALTER TABLE {self._chunks_table} ADD COLUMN IF NOT EXISTS lexical_length INTEGER NOT NULL DEFAULT 0"
            )
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._terms_table} ("
                f" chunk_id BIGINT NOT NULL REFERENCES {self._chunks_table} (id) ON DELETE CASCADE,"
                " term TEXT NOT NULL, tf INTEGER NOT NULL)"
            )
            await conn.execute(f"CREATE INDEX IF NOT EXISTS {self._terms_table}_term ON {self._terms_table} (term)")
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {self._terms_table}_chunk ON {self._terms_table} (chunk_id)"
            )

    async def sources(self) -> dict[str, str]:
        pool = await self._connections()
        rows = await pool.fetch(f"SELECT source, content_hash FROM {self._sources_table}")
        return {row["source"]: row["content_hash"] for row in rows}

    async def replace_source(
        self, source: str, content_hash: str, chunks: Sequence[IndexedChunk], vectors: np.ndarray
    ) -> None:
        vectors = _check_vectors(chunks, vectors, self.dim)
        chunk_terms = [Counter(terms(chunk.text)) for chunk in chunks]
        pool = await self._connections()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(f"DELETE FROM {self._chunks_table} WHERE source = $1", source)
            await conn.copy_records_to_table(
                self._chunks_table,
                columns=("source", "text", "location", "start_offset", "end_offset", "embedding", "lexical_length"),
                records=[
                    (source, chunk.text, chunk.location, chunk.start, chunk.end, vector, counts.total())
                    for chunk, vector, counts in zip(chunks, vectors, chunk_terms, strict=True)
                ],
            )
            # COPY takes ids from the sequence in row order: the source's ids, sorted, are its chunks in order.
            ids = await conn.fetch(f"SELECT id FROM {self._chunks_table} WHERE source = $1 ORDER BY id", source)
            await conn.copy_records_to_table(
                self._terms_table,
                columns=("chunk_id", "term", "tf"),
                records=[
                    (row["id"], term, count)
                    for row, counts in zip(ids, chunk_terms, strict=True)
                    for term, count in counts.items()
                ],
            )
            await conn.execute(
                f"INSERT INTO {self._sources_table} (source, content_hash) VALUES ($1, $2)"
                " ON CONFLICT (source) DO UPDATE SET content_hash = excluded.content_hash",
                source,
                content_hash,
            )

    async def delete_source(self, source: str) -> None:
        pool = await self._connections()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(f"DELETE FROM {self._chunks_table} WHERE source = $1", source)
            await conn.execute(f"DELETE FROM {self._sources_table} WHERE source = $1", source)

    async def search(self, vector: np.ndarray, k: int) -> list[Hit]:
        pool = await self._connections()
        # `<#>` is the negative inner product, the operator the HNSW index serves.
        rows = await pool.fetch(
            f"SELECT source, text, location, start_offset, end_offset, -(embedding <#> $1) AS score"
            f" FROM {self._chunks_table} ORDER BY embedding <#> $1 LIMIT $2",
            np.asarray(vector, dtype=np.float32),
            k,
        )
        return [_hit(row) for row in rows]

    async def search_lexical(self, query: Sequence[str], k: int) -> list[Hit]:
        if not query or k <= 0:
            return []
        pool = await self._connections()
        chunks, terms_table = self._chunks_table, self._terms_table
        rows = await pool.fetch(
            f"""
            WITH q AS (SELECT term, count(*) AS qtf FROM unnest($1::text[]) AS term GROUP BY term),
            stats AS (SELECT count(*)::float8 AS n, coalesce(avg(lexical_length), 0)::float8 AS avgdl FROM {chunks}),
            df AS (SELECT t.term, count(*)::float8 AS df FROM {terms_table} t JOIN q USING (term) GROUP BY t.term),
            scored AS (
                SELECT t.chunk_id, sum(
                    q.qtf * ln(1 + (stats.n - df.df + 0.5) / (df.df + 0.5)) * t.tf * ({K1} + 1)
                    / (t.tf + {K1} * (1 - {B} + {B} * c.lexical_length / greatest(stats.avgdl, 1)))
                ) AS score
                FROM {terms_table} t JOIN q USING (term) JOIN df USING (term) JOIN {chunks} c ON c.id = t.chunk_id,
                stats
                GROUP BY t.chunk_id ORDER BY score DESC, t.chunk_id LIMIT $2
            )
            SELECT c.source, c.text, c.location, c.start_offset, c.end_offset, s.score
            FROM scored s JOIN {chunks} c ON c.id = s.chunk_id ORDER BY s.score DESC, c.id
            """,
            list(query),
            k,
        )
        return [_hit(row) for row in rows]

    async def flush(self) -> None:
        """Writes are already committed; the first flush builds the HNSW index over what was loaded.

        Building HNSW once over a bulk load is an order of magnitude faster
        than growing it row by row (10k chunks: ~126 s inserted into an existing
        index); once it exists, later writes maintain it. Until then searches
        are exact scans, which is what a small index wants anyway.
        """
        pool = await self._connections()
        async with pool.acquire() as conn:
            await conn.execute("SET maintenance_work_mem = '256MB'")
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS {self._chunks_table}_hnsw ON {self._chunks_table}"
                " USING hnsw (embedding vector_ip_ops)"
            )

    async def drop(self) -> None:
        """Remove this index's tables."""
        pool = await self._connections()
        await pool.execute(f"DROP TABLE IF EXISTS {self._terms_table}, {self._chunks_table}, {self._sources_table}")
        self._tables_ready = False

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def _hit(row: asyncpg.Record) -> Hit:
    chunk = IndexedChunk(
        text=row["text"],
        source=row["source"],
        location=row["location"],
        start=row["start_offset"],
        end=row["end_offset"],
    )
    return Hit(chunk=chunk, score=float(row["score"]))
