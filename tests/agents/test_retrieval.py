"""Loaders, chunking, incremental indexing, and retrieval quality on the example car spec sheets."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from relaychain.agents.documents.chunking import chunk_sections
from relaychain.agents.documents.embeddings import TransformerEmbedder
from relaychain.agents.documents.indexer import DocumentIndexer
from relaychain.agents.documents.loaders import LoaderError, Section, load_file, load_markdown
from relaychain.agents.retriever import RetrieverAgent
from relaychain.agents.stores.vectors import NumpyVectorIndex, PgVectorIndex, VectorIndex
from relaychain.bus.errors import AgentError
from relaychain.schemas import Job, Request
from relaychain.schemas.config import AppConfig

CARS = Path(__file__).parents[2] / "examples" / "cars" / "specs"


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

QUESTIONS = {
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
    for question, source in QUESTIONS.items():
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
    agent = RetrieverAgent(retrieval_config(), {"cars": index}, embedder)

    (job,) = await agent.handle(retrieve_job("car_blog", car="Ostrava Vektor R range and battery"))
    assert job.slip == ("generate",) and len(job.context) == 3
    assert job.context[0].source == "ostrava-vektor-r.pdf" and job.context[0].location == "page 1"
    assert "kWh" in job.context[0].text
    assert [c.score for c in job.context] == sorted((c.score for c in job.context), reverse=True)

    (untouched,) = await agent.handle(retrieve_job("chat"))
    assert untouched.context == ()
    with pytest.raises(AgentError) as raised:
        await agent.handle(retrieve_job("car_blog"))
    assert raised.value.code == "missing_query_var"


def test_retriever_needs_every_configured_index() -> None:
    with pytest.raises(ValueError, match="cars"):
        RetrieverAgent(retrieval_config(), {}, CountingEmbedder())  # type: ignore[arg-type]


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
    from relaychain.wiring import _index_sources

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "car.txt").write_text("Aurora X7\n")
    (docs / "x.txt").symlink_to("/etc/passwd")
    (docs / "big.txt").write_text("y" * 64)
    index = NumpyVectorIndex(tmp_path / "index")

    await _index_sources(index, CountingEmbedder(), docs, "cars", 32)  # type: ignore[arg-type]

    assert list(await index.sources()) == ["car.txt"]
