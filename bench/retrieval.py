"""Retrieval and memory benchmarks; prints a markdown table.

    python bench/retrieval.py [--postgres DSN] [--sizes 10000,100000] [--chunks 256]

- embedding throughput of the default encoder on CPU (2 torch threads, batched);
- query latency p50/p99 of the numpy index and pgvector (HNSW) at each size,
  over random unit vectors (the stores do not care where vectors come from);
- memory load+save latency p50/p99 of a 20-turn conversation on SQLite and PostgreSQL.

Without --postgres (or RELAYCHAIN_TEST_POSTGRES) a throwaway server is started from `pgserver`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relaychain.agents.documents.embeddings import TransformerEmbedder  # noqa: E402
from relaychain.agents.stores.history import (  # noqa: E402
    ConversationStore,
    PostgresConversationStore,
    SqliteConversationStore,
    Turn,
)
from relaychain.agents.stores.vectors import (  # noqa: E402
    IndexedChunk,
    NumpyVectorIndex,
    PgVectorIndex,
    VectorIndex,
)

DIM = 384
QUERIES = 200


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    ms = np.array(samples_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def bench_embedding(chunks: int) -> float:
    embedder = TransformerEmbedder(threads=2, batch_size=32)
    words = [
        "battery",
        "range",
        "WLTP",
        "kWh",
        "torque",
        "price",
        "dimensions",
        "charging",
        "motor",
        "wheelbase",
        "weight",
    ]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=150)) for _ in range(chunks)]  # ~200-token chunks
    embedder.embed_blocking(texts[:32])  # warm-up
    start = time.perf_counter()
    embedder.embed_blocking(texts)
    rate = chunks / (time.perf_counter() - start)
    embedder.close()
    return rate


def random_units(n: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


async def fill(index: VectorIndex, n: int, rng: np.random.Generator) -> None:
    per_source = 1000
    for first in range(0, n, per_source):
        count = min(per_source, n - first)
        source = f"doc{first // per_source}.txt"
        chunks = [IndexedChunk(text=f"chunk {first + i}", source=source) for i in range(count)]
        await index.replace_source(source, "h", chunks, random_units(count, rng))


async def query_latency(index: VectorIndex, rng: np.random.Generator) -> tuple[float, float]:
    queries = random_units(QUERIES, rng)
    for query in queries[:10]:
        await index.search(query, 5)
    samples = []
    for query in queries:
        start = time.perf_counter()
        await index.search(query, 5)
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


async def bench_indexes(dsn: str, sizes: list[int]) -> list[tuple[str, int, float, float, float]]:
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            rng = np.random.default_rng(size)
            numpy_index = NumpyVectorIndex(tmp)
            start = time.perf_counter()
            await fill(numpy_index, size, rng)
            build = time.perf_counter() - start
            rows.append(("numpy (exact)", size, build, *await query_latency(numpy_index, rng)))
        pg = PgVectorIndex(dsn, f"bench_{size}", DIM)
        await pg.drop()
        rng = np.random.default_rng(size)
        start = time.perf_counter()
        await fill(pg, size, rng)
        await pg.flush()
        build = time.perf_counter() - start
        rows.append(("pgvector (HNSW)", size, build, *await query_latency(pg, rng)))
        await pg.drop()
        await pg.close()
    return rows


async def memory_latency(store: ConversationStore, conversations: int = 50, turns: int = 20) -> tuple[float, float]:
    """One `memory.load` + `memory.save` per turn: load the history, append the new turn."""
    samples = []
    for c in range(conversations):
        cid = f"bench-{os.getpid()}-{c}-{time.time_ns()}"
        for t in range(turns):
            start = time.perf_counter()
            await store.load(cid)
            await store.append(
                cid, Turn(user=f"question {t} " * 20, assistant=f"answer {t} " * 40), event_id=f"{cid}-{t}"
            )
            samples.append(time.perf_counter() - start)
    await store.close()
    return percentiles(samples)


async def bench_memory(dsn: str) -> list[tuple[str, float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = await memory_latency(SqliteConversationStore(Path(tmp) / "memory.sqlite3"))
    pg_store = PostgresConversationStore(dsn)
    await pg_store.migrate()
    postgres = await memory_latency(pg_store)
    return [("SQLite", *sqlite), ("PostgreSQL", *postgres)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("RELAYCHAIN_TEST_POSTGRES"))
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--chunks", type=int, default=256, help="Chunks to embed for the throughput figure.")
    args = parser.parse_args()
    server = None
    dsn = args.postgres
    if not dsn:
        from tests.support.postgres import start

        server = start()
        dsn = server.dsn
    try:
        rate = bench_embedding(args.chunks)
        index_rows = asyncio.run(bench_indexes(dsn, [int(s) for s in args.sizes.split(",")]))
        memory_rows = asyncio.run(bench_memory(dsn))
    finally:
        if server is not None:
            server.stop()

    print(f"Embedding (all-MiniLM-L6-v2, CPU, 2 threads, batch 32, ~200-token chunks): **{rate:.1f} chunks/s**\n")
    print("| index | chunks | build s | query p50 ms | query p99 ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, size, build, p50, p99 in index_rows:
        print(f"| {name} | {size:,} | {build:.1f} | {p50:.2f} | {p99:.2f} |")
    print("\n| memory store | load+save p50 ms | load+save p99 ms |")
    print("| --- | ---: | ---: |")
    for name, p50, p99 in memory_rows:
        print(f"| {name} | {p50:.2f} | {p99:.2f} |")


if __name__ == "__main__":
    main()
