"""Incremental indexing of a folder of documents into a vector index.

A file is identified by its path relative to the folder and its SHA-256.
A re-run embeds only new or changed files, removes the chunks of files that
are gone, and embeds nothing at all for an unchanged folder. A file that
fails to load is reported and skipped; the rest are indexed. Loading,
chunking and hashing run in a thread, embedding on the embedder's worker.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from relaychain.agents.documents.chunking import Chunk, chunk_sections
from relaychain.agents.documents.embeddings import Embedder
from relaychain.agents.documents.loaders import LoaderError, load_file
from relaychain.agents.documents.walk import documents_under
from relaychain.agents.stores.vectors import IndexedChunk, VectorIndex
from relaychain.schemas.config import DEFAULT_MAX_FILE_BYTES

__all__ = ["DocumentIndexer", "IndexReport"]


@dataclass
class IndexReport:
    indexed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    chunks_embedded: int = 0


class DocumentIndexer:
    def __init__(
        self, index: VectorIndex, embedder: Embedder, *, chunk_tokens: int = 200, overlap_tokens: int = 40
    ) -> None:
        self._index = index
        self._embedder = embedder
        self._chunk_tokens = chunk_tokens
        self._overlap_tokens = overlap_tokens

    async def index_directory(
        self,
        root: Path,
        *,
        on_file: Callable[[str], None] | None = None,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    ) -> IndexReport:
        """Bring the index in line with the files under `root`; `on_file(source)` after each file (progress).

        Files the walk skips (links outside `root`, oversized files) are reported as failed, with the reason.
        """
        found = await asyncio.to_thread(documents_under, root, max_file_bytes=max_file_bytes)
        files = found.files
        known = await self._index.sources()
        report = IndexReport(failed=dict(found.skipped))
        for source in sorted(set(known) - set(files)):
            await self._index.delete_source(source)
            report.removed.append(source)
        for source, path in files.items():
            try:
                content_hash = await asyncio.to_thread(_sha256, path)
                if known.get(source) == content_hash:
                    report.unchanged.append(source)
                else:
                    report.chunks_embedded += await self._index_file(source, path, content_hash)
                    report.indexed.append(source)
            except (LoaderError, OSError) as error:
                report.failed[source] = str(error)
            if on_file is not None:
                on_file(source)
        await self._index.flush()
        return report

    async def _index_file(self, source: str, path: Path, content_hash: str) -> int:
        chunks = await asyncio.to_thread(self._chunk_file, source, path)
        vectors = await self._embedder.embed([chunk.embedding_text for chunk in chunks])
        indexed = [
            IndexedChunk(
                text=chunk.text, source=chunk.source, location=chunk.location, start=chunk.start, end=chunk.end
            )
            for chunk in chunks
        ]
        await self._index.replace_source(source, content_hash, indexed, vectors.reshape(len(chunks), -1))
        return len(chunks)

    def _chunk_file(self, source: str, path: Path) -> list[Chunk]:
        return chunk_sections(
            load_file(path),
            source,
            self._embedder.tokenizer,
            max_tokens=self._chunk_tokens,
            overlap_tokens=self._overlap_tokens,
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
