"""Loaders, chunking, incremental indexing, and retrieval quality on the example car spec sheets."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from relaychain.agents.documents.causal_embeddings import CausalLMEmbedder
from relaychain.agents.documents.chunking import chunk_sections
from relaychain.agents.documents.embedders import close_embedder, open_embedder
from relaychain.agents.documents.embeddings import TransformerEmbedder
from relaychain.agents.documents.indexer import DocumentIndexer
from relaychain.agents.documents.loaders import LoaderError, Section, load_file, load_markdown
from relaychain.agents.documents.ranking import fuse, group_by_source
from relaychain.agents.documents.remote_embeddings import OpenAIEmbedder
from relaychain.agents.retriever import RetrieverAgent
from relaychain.agents.stores.journal import SqliteJournal
from relaychain.agents.stores.vectors import Hit, IndexedChunk, NumpyVectorIndex, PgVectorIndex, VectorIndex
from relaychain.bus.errors import AgentError, RetryableError
from relaychain.schemas import Job, Request, Usage
from relaychain.schemas.config import AppConfig, ModelConfig, RetrievalConfig
from tests.agents.conftest import SMOLLM2_CONFIG, LoadedModel
from tests.support.openai_server import EMBEDDING_DIMENSIONS, Fail, OpenAITestServer
from tests.support.retrieval_set import CARS, QUESTIONS


class WordTokenizer:
    def count(self, text: str) -> int:
        return len(text.split())


class CountingEmbedder:
    """Deterministic fake vectors; counts every text it is asked to embed."""

    dim = 16
    tokenizer = WordTokenizer()

    def __init__(self) -> None:
        self.embedded: list[str] = []

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded.extend(texts)
        rng = np.random.default_rng([len(t) for t in texts] or [0])
        vectors = rng.normal(size=(len(texts), self.dim)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class CountingRealEmbedder:
    def __init__(self, inner: TransformerEmbedder) -> None:
        self.inner = inner
        self.dim = inner.dim
        self.tokenizer = inner.tokenizer
        self.embedded = 0

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded += len(texts)
        return await self.inner.embed(texts)


# --- loaders and chunking ----------------------------------------------------


def test_markdown_sections_keep_their_heading_and_trail(tmp_path: Path) -> None:
    doc = tmp_path / "car.md"
    doc.write_text("intro line\n# Car A\nabout\n## Range\n```\n# not a heading\n```\n500 km\n## Price\nEUR 1\n")
    sections = load_markdown(doc)
    assert [s.location for s in sections] == ["", "Car A", "Car A > Range", "Car A > Price"]
    assert sections[2].text.startswith("## Range\n") and "# not a heading" in sections[2].text
    text = doc.read_text()
    assert all(text[s.offset : s.offset + len(s.text)] == s.text for s in sections)
    assert {s.title for s in sections} == {"Car A"}


def test_unknown_suffix_and_broken_pdf_are_loader_errors(tmp_path: Path) -> None:
    (tmp_path / "x.docx").write_bytes(b"PK")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    for name in ("x.docx", "broken.pdf"):
        with pytest.raises(LoaderError):
            load_file(tmp_path / name)


def test_pdf_pages_are_sections() -> None:
    sections = load_file(CARS / "ostrava-vektor-r.pdf")
    assert sections[0].location == "page 1" and "105 kWh" in sections[0].text


def test_chunks_respect_the_budget_overlap_and_point_back_into_the_text() -> None:
    text = " ".join(f"w{i}" for i in range(1000))
    section = Section(text=text, location="page 2", title="T", offset=7)
    chunks = chunk_sections([section], "doc.pdf", WordTokenizer(), max_tokens=100, overlap_tokens=20)
    assert all(len(c.text.split()) <= 100 for c in chunks)
    assert all(text[c.start - 7 : c.end - 7] == c.text for c in chunks)
    assert all(c.source == "doc.pdf" and c.location == "page 2" for c in chunks)
    for before, after in itertools.pairwise(chunks):
        shared = set(before.text.split()) & set(after.text.split())
        assert 15 <= len(shared) <= 20
    assert chunks[0].text.startswith("w0 ") and chunks[-1].text.endswith("w999")


def test_cjk_text_without_spaces_is_still_chunked() -> None:
    section = Section(text="续航里程七百公里" * 100, location="", title="")
    chunks = chunk_sections([section], "cn.txt", WordTokenizer(), max_tokens=50, overlap_tokens=10)
    assert len(chunks) > 10 and all(len(c.text) <= 50 for c in chunks)


# --- incremental indexing ----------------------------------------------------


async def test_reindexing_embeds_only_what_changed(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(CARS, docs)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    index = NumpyVectorIndex(tmp_path / "index")
    embedder = CountingEmbedder()
    indexer = DocumentIndexer(index, embedder)

    first = await indexer.index_directory(docs)
    assert sorted(first.indexed) == sorted(p.name for p in CARS.iterdir())
    assert list(first.failed) == ["broken.pdf"]
    assert first.chunks_embedded == len(embedder.embedded) > 0

    embedder.embedded.clear()
    again = await DocumentIndexer(NumpyVectorIndex(tmp_path / "index"), embedder).index_directory(docs)
    assert embedder.embedded == [] and again.chunks_embedded == 0
    assert len(again.unchanged) == len(first.indexed)

    (docs / "kestrel-brio-urban.txt").write_text("Kestrel Brio Urban\nWLTP range: 333 km\n")
    (docs / "qilin-tengyun-s9.md").unlink()
    changed = await indexer.index_directory(docs)
    assert changed.indexed == ["kestrel-brio-urban.txt"] and changed.removed == ["qilin-tengyun-s9.md"]
    sources = await index.sources()
    assert "qilin-tengyun-s9.md" not in sources
    hits = await index.search(np.ones(16, dtype=np.float32) / 4, 100)
    assert not any(hit.chunk.source == "qilin-tengyun-s9.md" for hit in hits)
    assert [h.chunk.text for h in hits if h.chunk.source == "kestrel-brio-urban.txt"] == [
        "Kestrel Brio Urban\nWLTP range: 333 km"
    ]


# --- retrieval quality with the real model ----------------------------------

ENGLISH_QUESTIONS = {
    "What is the range of the Halvorsen Nordkap E7?": "halvorsen-nordkap-e7.md",
    "What is the CLTC range of the Qilin Tengyun S9?": "qilin-tengyun-s9.md",
    "What is the range of the Maraveth Solenne 4?": "maraveth-solenne-4.txt",
    "How far can the Kestrel Brio Urban drive on one charge?": "kestrel-brio-urban.txt",
    "What is the range of the Ostrava Vektor R?": "ostrava-vektor-r.pdf",
    "What is the WLTP range of the Lumaro Pathfinder X?": "lumaro-pathfinder-x.pdf",
    "How much does the Lumaro Pathfinder X cost?": "lumaro-pathfinder-x.pdf",
    "How fast does the Ostrava Vektor R accelerate from 0 to 100?": "ostrava-vektor-r.pdf",
}


def retrieval_config() -> AppConfig:
    model = {
        "provider": "openai",
        "tokenizer": "tiktoken:cl100k_base",
        "context_window": 4096,
        "max_output_tokens": 512,
    }
    return AppConfig.model_validate(
        {
            "models": {"chat": {**model, "price": {"input_per_million": "1", "output_per_million": "1"}}},
            "businesses": {
                "car_blog": {
                    "default_model": "chat",
                    "allowed_models": ["chat"],
                    "templates": {"default": "t.j2"},
                    "output_schema": "blog",
                    "steps": ["retrieve", "generate"],
                    "retrieval": {"index": "cars", "top_k": 3, "query_var": "car"},
                },
                "chat": {
                    "default_model": "chat",
                    "allowed_models": ["chat"],
                    "templates": {"default": "t.j2"},
                    "output_schema": "blog",
                    "steps": ["retrieve", "generate"],
                },
            },
            "output_schemas": {"blog": "blog.json"},
        }
    )


def retrieve_job(business: str, **vars: str) -> Job:
    request = Request(business=business, input="Write a blog post", vars=vars)
    return Job(request=request, business=business, model="chat", slip=("retrieve", "generate"))


async def assert_cars_found(index: VectorIndex, embedder: TransformerEmbedder) -> None:
    counting = CountingRealEmbedder(embedder)
    report = await DocumentIndexer(index, counting).index_directory(CARS)
    assert report.failed == {} and counting.embedded == report.chunks_embedded > 0
    contributing: set[str] = set()
    for question, source in ENGLISH_QUESTIONS.items():
        (vector,) = await embedder.embed([question])
        top = [hit.chunk.source for hit in await index.search(vector, 3)]
        assert source in top, f"{question!r}: {source} not in {top}"
        contributing.add(Path(top[top.index(source)]).suffix)
    assert contributing == {".md", ".txt", ".pdf"}

    again = await DocumentIndexer(index, counting).index_directory(CARS)
    assert again.chunks_embedded == 0 and counting.embedded == report.chunks_embedded


@pytest.mark.slow
async def test_the_right_car_is_in_the_top_3_numpy(embedder: TransformerEmbedder, tmp_path: Path) -> None:
    await assert_cars_found(NumpyVectorIndex(tmp_path / "cars"), embedder)


@pytest.mark.slow
@pytest.mark.postgres
async def test_the_right_car_is_in_the_top_3_pgvector(embedder: TransformerEmbedder, postgres_dsn: str) -> None:
    index = PgVectorIndex(postgres_dsn, "cars_quality", embedder.dim)
    await index.drop()
    try:
        await assert_cars_found(index, embedder)
    finally:
        await index.drop()
        await index.close()


@pytest.mark.slow
async def test_retriever_attaches_top_k_chunks_with_sources(embedder: TransformerEmbedder, tmp_path: Path) -> None:
    index = NumpyVectorIndex(tmp_path / "cars")
    await DocumentIndexer(index, embedder).index_directory(CARS)
    agent = RetrieverAgent(retrieval_config(), {"cars": index}, {"cars": embedder})

    (job,) = await agent.handle(retrieve_job("car_blog", car="Ostrava Vektor R range and battery"))
    assert job.slip == ("generate",)
    assert job.context[0].source == "ostrava-vektor-r.pdf" and job.context[0].location == "page 1"
    assert "kWh" in job.context[0].text
    sources = [c.source for c in job.context]
    assert len(set(sources)) == 3, "top_k counts sheets"
    assert all(sources.count(s) <= 2 for s in sources), "at most chunks_per_source chunks of one sheet"
    assert sources == sorted(sources, key=sources.index), "a sheet's chunks stay together"

    (untouched,) = await agent.handle(retrieve_job("chat"))
    assert untouched.context == ()
    with pytest.raises(AgentError) as raised:
        await agent.handle(retrieve_job("car_blog"))
    assert raised.value.code == "missing_query_var"


def test_retriever_needs_every_configured_index() -> None:
    with pytest.raises(ValueError, match="cars"):
        RetrieverAgent(retrieval_config(), {}, {"cars": CountingEmbedder()})


# --- which files are read: only regular files inside the folder, up to a size (issue 10) ---


async def test_a_link_leading_outside_the_folder_is_skipped_and_never_read(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "car.txt").write_text("Aurora X7\nRange: 500 km\n")
    (docs / "x.txt").symlink_to("/etc/passwd")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\nnot for the index\n")
    (docs / "linked-folder").symlink_to(outside)
    (docs / "alias.txt").symlink_to(docs / "car.txt")  # a link inside the folder is read like its target
    index = NumpyVectorIndex(tmp_path / "index")

    report = await DocumentIndexer(index, CountingEmbedder()).index_directory(docs)

    assert sorted(report.indexed) == ["alias.txt", "car.txt"]
    assert report.failed == {"x.txt": "skipped: a link to /etc/passwd, outside the folder"}
    hits = await index.search(np.ones(16, dtype=np.float32) / 4, 100)
    assert {hit.chunk.source for hit in hits} == {"alias.txt", "car.txt"}
    assert not any("root:" in hit.chunk.text or "Secret" in hit.chunk.text for hit in hits)


async def test_a_file_over_the_size_limit_is_skipped_and_an_indexed_one_that_becomes_a_link_out_is_dropped(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "small.txt").write_text("small file\n")
    (docs / "big.md").write_text("# Big\n" + "word " * 100)
    index = NumpyVectorIndex(tmp_path / "index")
    indexer = DocumentIndexer(index, CountingEmbedder())

    first = await indexer.index_directory(docs, max_file_bytes=100)
    assert first.indexed == ["small.txt"]
    assert first.failed == {"big.md": "skipped: 506 bytes, over the limit of 100 (retrieval.max_file_bytes)"}

    (docs / "small.txt").unlink()
    (docs / "small.txt").symlink_to("/etc/hostname")
    again = await indexer.index_directory(docs, max_file_bytes=1000)
    assert again.indexed == ["big.md"] and again.removed == ["small.txt"]
    assert list(again.failed) == ["small.txt"] and list(await index.sources()) == ["big.md"]


async def test_what_is_not_a_regular_file_is_skipped(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    os.mkfifo(docs / "pipe.txt")  # reading it would block the indexer forever
    (docs / "gone.md").symlink_to(docs / "missing.md")
    (docs / "ok.txt").write_text("fine\n")

    report = await DocumentIndexer(NumpyVectorIndex(tmp_path / "index"), CountingEmbedder()).index_directory(docs)

    assert report.indexed == ["ok.txt"]
    assert report.failed["pipe.txt"] == "skipped: not a regular file"
    assert report.failed["gone.md"].startswith("skipped: cannot follow")


async def test_the_retrievers_sources_are_walked_by_the_same_rules(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "car.txt").write_text("Aurora X7\n")
    (docs / "x.txt").symlink_to("/etc/passwd")
    (docs / "big.txt").write_text("y" * 64)
    index = NumpyVectorIndex(tmp_path / "index")
    raw = retrieval_config().model_dump(mode="json")
    raw["businesses"]["car_blog"]["retrieval"]["max_file_bytes"] = 32
    agent = RetrieverAgent(
        AppConfig.model_validate(raw), {"cars": index}, {"cars": CountingEmbedder()}, sources={"cars": docs}
    )

    await agent.warm_up()

    assert list(await index.sources()) == ["car.txt"]


# --- fusion and grouping -----------------------------------------------------


def hit(source: str, n: int, score: float = 0.0) -> Hit:
    return Hit(chunk=IndexedChunk(text=f"{source} {n}", source=source, start=n, end=n + 1), score=score)


def test_rrf_rewards_chunks_both_rankings_agree_on() -> None:
    dense = [hit("a", 0), hit("b", 0), hit("c", 0)]
    lexical = [hit("b", 0), hit("d", 0), hit("e", 0)]
    fused = fuse([dense, lexical])
    assert [h.chunk.source for h in fused] == ["b", "a", "d", "c", "e"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)


def test_one_sheet_cannot_fill_the_list() -> None:
    ranked = [
        hit("long.md", 0),
        hit("long.md", 1),
        hit("long.md", 2),
        hit("b.md", 0),
        hit("long.md", 3),
        hit("c.md", 0),
    ]
    grouped = group_by_source(ranked, top_k=2, per_source=2)
    assert [(h.chunk.source, h.chunk.start) for h in grouped] == [("long.md", 0), ("long.md", 1), ("b.md", 0)]


# --- configured embedders ----------------------------------------------------


def embedder_config(**embedders: dict[str, object]) -> AppConfig:
    raw = retrieval_config().model_dump(mode="json")
    raw["embedders"] = embedders
    raw["businesses"]["car_blog"]["retrieval"]["embedder"] = next(iter(embedders), None)
    return AppConfig.model_validate(raw)


def hosted_embedder_config(server: OpenAITestServer) -> AppConfig:
    """car_blog's index on the test server's embeddings (model `emb`, 64 dimensions), key in TEST_EMBEDDINGS_KEY."""
    return embedder_config(
        api={
            "kind": "openai",
            "api_key_env": "TEST_EMBEDDINGS_KEY",
            "model": "emb",
            "base_url": server.base_url,
            "dimensions": 64,
            "price": {"input_per_million": "0.02", "output_per_million": "0"},
        }
    )


def test_embedder_config_is_checked_at_load() -> None:
    with pytest.raises(ValueError, match="unknown embedder"):
        retrieval = {"index": "cars", "embedder": "nope"}
        raw = retrieval_config().model_dump(mode="json")
        raw["businesses"]["car_blog"]["retrieval"] = retrieval
        AppConfig.model_validate(raw)
    with pytest.raises(ValueError, match="not a transformers model"):
        embedder_config(brief={"kind": "causal-lm", "model": "chat"})
    with pytest.raises(ValueError, match="needs `base_url` and `price`"):
        embedder_config(api={"kind": "openai", "model": "text-embedding-3-small"})
    raw = embedder_config(e5={"kind": "multilingual-e5"}).model_dump(mode="json")
    raw["businesses"]["chat"]["retrieval"] = {"index": "cars"}  # the same index with the default embedder
    with pytest.raises(ValueError, match="two embedders"):
        AppConfig.model_validate(raw)


async def test_openai_embeddings_are_searched_and_billed_as_an_embed_step(
    openai_server: OpenAITestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_EMBEDDINGS_KEY", "sk-test")
    config = embedder_config(
        api={
            "kind": "openai",
            "api_key_env": "TEST_EMBEDDINGS_KEY",
            "model": "text-embedding-3-small",
            "base_url": openai_server.base_url,
            "price": {"input_per_million": "0.02", "output_per_million": "0", "currency": "USD"},
        }
    )
    embedder = await open_embedder("api", config, tmp_path)
    assert isinstance(embedder, OpenAIEmbedder) and embedder.dim == EMBEDDING_DIMENSIONS
    index = NumpyVectorIndex(tmp_path / "cars")
    agent = RetrieverAgent(config, {"cars": index}, {"cars": embedder}, sources={"cars": CARS})
    await agent.warm_up()
    assert set(await index.sources()) == {p.name for p in CARS.iterdir()}
    asked = len(openai_server.requests)

    question = "Which coupe has carbon-ceramic brakes and an active rear wing?"
    job, usage = await agent.handle(retrieve_job("car_blog", car=question))
    assert isinstance(job, Job) and isinstance(usage, Usage)
    assert job.context[0].source == "ostrava-vektor-r.pdf"
    [request] = openai_server.requests[asked:]
    assert request.path == "/v1/embeddings" and request.body["input"] == [question]
    assert request.authorization == "Bearer sk-test"
    tokens = 11  # the test server counts a token per word: which, coupe, has, carbon, ceramic, ... wing
    assert usage.usage == job.usage[-1]
    assert (usage.usage.step, usage.usage.model, usage.usage.input_tokens) == ("embed", "api", tokens)
    assert usage.usage.input_cost == Decimal("0.02") * tokens / 1_000_000
    assert usage.usage.currency == "USD" and usage.usage.output_cost == 0
    await close_embedder(embedder)


async def test_a_redelivered_job_reuses_its_paid_query_embedding(
    openai_server: OpenAITestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_EMBEDDINGS_KEY", "sk-test")
    config = hosted_embedder_config(openai_server)
    embedder = await open_embedder("api", config, tmp_path)
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    index = NumpyVectorIndex(tmp_path / "cars")
    agent = RetrieverAgent(config, {"cars": index}, {"cars": embedder}, sources={"cars": CARS}, journal=journal)
    await agent.warm_up()
    job = retrieve_job("car_blog", car="Which hatchback is made in Valencia?")
    paid_before = openai_server.attempts("emb")

    first = await agent.handle(job)
    again = await RetrieverAgent(config, {"cars": index}, {"cars": embedder}, journal=journal).handle(job)

    assert openai_server.attempts("emb") == paid_before + 1, "the redelivered job called the API again"
    assert first[0] == again[0], "the same context and usage line on the job"
    paid, replayed = first[1], again[1]
    assert isinstance(paid, Usage) and isinstance(replayed, Usage)
    assert (replayed.usage, replayed.created_at) == (paid.usage, paid.created_at), "billed as of the one payment"
    await journal.close()
    await close_embedder(embedder)


async def test_an_embeddings_api_failure_is_a_typed_error(
    openai_server: OpenAITestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_EMBEDDINGS_KEY", "sk-test")
    config = hosted_embedder_config(openai_server)
    embedder = await open_embedder("api", config, tmp_path)
    openai_server.script("emb", Fail(429), Fail(400))
    agent = RetrieverAgent(config, {"cars": NumpyVectorIndex(tmp_path / "i")}, {"cars": embedder})
    with pytest.raises(RetryableError) as busy:
        await agent.handle(retrieve_job("car_blog", car="range"))
    with pytest.raises(AgentError) as rejected:
        await agent.handle(retrieve_job("car_blog", car="range"))
    assert (busy.value.code, rejected.value.code) == ("embedder_unavailable", "embedder_rejected")
    assert not rejected.value.retryable
    await close_embedder(embedder)


async def test_lexical_search_needs_no_embedding(tmp_path: Path) -> None:
    raw = retrieval_config().model_dump(mode="json")
    raw["businesses"]["car_blog"]["retrieval"]["search"] = "lexical"
    config = AppConfig.model_validate(raw)
    index = NumpyVectorIndex(tmp_path / "cars")
    embedder = CountingEmbedder()
    agent = RetrieverAgent(config, {"cars": index}, {"cars": embedder}, sources={"cars": CARS})
    (job,) = await agent.handle(retrieve_job("car_blog", car="轻羽mini慢充充满需要几个小时？"))
    indexed = len(embedder.embedded)
    assert indexed > 0, "the first job waited for the sources to be indexed"
    assert isinstance(job, Job) and job.context[0].source == "xinghe-qingyu-mini.md"
    (job,) = await agent.handle(retrieve_job("car_blog", car="Jinlong Taihang X towing"))
    assert (
        isinstance(job, Job) and job.context[0].source == "jinlong-taihang-x.txt" and len(embedder.embedded) == indexed
    )


# --- the labelled Chinese/English set, real models ---------------------------


async def hits_at(agent: RetrieverAgent, search: str) -> tuple[float, float]:
    retrieval = RetrievalConfig(index="cars", top_k=3, chunks_per_source=1, search=search)  # type: ignore[arg-type]
    first = top3 = 0
    for question, source, _ in QUESTIONS:
        found, _ = await agent.search(retrieval, question)
        sources = [h.chunk.source for h in found]
        first += sources[0] == source
        top3 += source in sources
    return first / len(QUESTIONS), top3 / len(QUESTIONS)


@pytest.mark.slow
async def test_hybrid_search_beats_dense_minilm_on_the_labelled_set(
    embedder: TransformerEmbedder, tmp_path: Path
) -> None:
    index = NumpyVectorIndex(tmp_path / "cars")
    agent = RetrieverAgent(retrieval_config(), {"cars": index}, {"cars": embedder}, sources={"cars": CARS})
    await agent.warm_up()
    dense, hybrid = await hits_at(agent, "dense"), await hits_at(agent, "hybrid")
    assert hybrid[0] > dense[0] and hybrid[1] > dense[1], (dense, hybrid)
    assert hybrid[1] >= 0.8, hybrid


@pytest.mark.slow
async def test_the_multilingual_embedder_finds_sheets_across_languages(tmp_path: Path) -> None:
    config = embedder_config(e5={"kind": "multilingual-e5"})
    e5 = await open_embedder("e5", config, tmp_path)
    agent = RetrieverAgent(config, {"cars": NumpyVectorIndex(tmp_path / "cars")}, {"cars": e5}, sources={"cars": CARS})
    await agent.warm_up()
    assert await hits_at(agent, "dense") >= (0.75, 0.8)
    found, _ = await agent.search(
        RetrievalConfig(index="cars", search="dense"), "哪款车适合七口之家长途出行，还不用担心补能？"
    )
    assert found[0].chunk.source == "longteng-hanjiang-l.txt"


@pytest.mark.slow
async def test_a_causal_lm_embeds_as_the_brief_says(smollm2: LoadedModel, smollm2_data_dir: Path) -> None:
    """Mean of SmolLM2's last hidden state, L2-normalised, with the generator's own cached weights."""
    embedder = await CausalLMEmbedder.load("smollm2-135m", ModelConfig.model_validate(SMOLLM2_CONFIG), smollm2_data_dir)
    texts = ["Battery: 42 kWh LFP", "电池：72 kWh 三元锂电池", "The weather in Brno is mild in spring, with rain."]
    batch = await embedder.embed(texts)
    assert batch.shape == (3, embedder.dim) and embedder.dim == 576
    assert np.allclose(np.linalg.norm(batch, axis=1), 1, atol=1e-5)
    alone = np.vstack([await embedder.embed([text]) for text in texts])
    assert np.allclose(batch, alone, atol=1e-4), "padding in a batch does not change a text's vector"
    assert batch[0] @ batch[1] > batch[0] @ batch[2], "two battery lines are closer than a weather report"
    assert embedder.tokenizer is not None and embedder.tokenizer.count("Battery") > 0
