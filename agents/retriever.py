"""The retriever agent: the business's documents most relevant to the request, attached to the job.

Step `retrieve` takes the query (the request's input, or the template
variable the business names in `retrieval.query_var`) and searches the
business's index as `retrieval.search` says: `dense` ranks chunks by the
embedder's vectors, `lexical` by BM25 over words and Chinese bigrams, and
`hybrid` (the default) fuses both rankings by reciprocal rank, so a model
number or a rare word the embedder blurs still finds its sheet, and a
paraphrase or a question in the other language still finds it through the
vectors. The hits are grouped per document: the `top_k` best documents, each
with its `chunks_per_source` best chunks, go into `job.context` with their
scores and sources, where prompt templates can cite them.

An embedder that bills per token (a hosted API) prices the query's tokens:
the job carries the usage line and a `Usage` event (step `embed`) goes to the
cost ledger. With a completion journal, the paid query vector is recorded
under the job's id before anything is emitted, so a redelivered job reuses
it: paid once, billed once.

Each index has its own embedder (vectors of two models do not compare). The
composition root opens indexes and embedders; `warm_up` indexes the
configured source folders before the first job, incrementally.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from opentelemetry import trace
from pydantic import BaseModel

from relaychain.agents.documents.embeddings import Embedder, MeteredEmbedder, QueryEmbedder
from relaychain.agents.documents.indexer import DocumentIndexer
from relaychain.agents.documents.ranking import fuse, group_by_source
from relaychain.agents.documents.remote_embeddings import EMBED_STEP
from relaychain.agents.guards import business_of, job_for, unknown_step
from relaychain.agents.stores.journal import CompletionJournal
from relaychain.agents.stores.lexical import terms
from relaychain.agents.stores.vectors import Hit, VectorIndex
from relaychain.bus.errors import AgentError
from relaychain.schemas import Event, Job, RetrievedChunk, StepUsage, Usage
from relaychain.schemas.config import AppConfig, RetrievalConfig
from relaychain.schemas.envelope import utc_now
from relaychain.schemas.errors import ErrorCode

__all__ = ["PaidEmbedding", "RetrieverAgent"]

log = logging.getLogger(__name__)

CANDIDATES = 50
"""Chunks each ranking contributes before fusion and grouping (more when top_k asks for more)."""


class RetrieverAgent:
    name = "retriever"

    def __init__(
        self,
        config: AppConfig,
        indexes: Mapping[str, VectorIndex],
        embedders: Mapping[str, Embedder],
        *,
        sources: Mapping[str, Path] | None = None,
        journal: CompletionJournal | None = None,
    ) -> None:
        """`indexes` and `embedders` by index name (from `retrieval.index`); a missing one fails at start-up.

        `sources`: index name -> the folder `warm_up` indexes into it.
        """
        wanted = {b.retrieval.index for b in config.businesses.values() if b.retrieval is not None}
        missing = wanted - (set(indexes) & set(embedders))
        if missing:
            raise ValueError(f"no open index or embedder for {sorted(missing)}")
        self._config = config
        self._indexes = indexes
        self._embedders = embedders
        self._sources = dict(sources or {})
        self._journal = journal
        self._warm = False
        self._warming = asyncio.Lock()

    async def warm_up(self) -> None:
        """Bring each index in line with its source folder (only new or changed files are embedded).

        The runtime calls this before the first job; a job that comes first waits for it instead.
        """
        async with self._warming:
            if not self._warm:
                await self._index_sources()
                self._warm = True

    async def _index_sources(self) -> None:
        for name, folder in self._sources.items():
            if not folder.is_dir():
                log.warning("retrieval sources %s for index %s not found; serving what the index holds", folder, name)
                continue
            indexer = DocumentIndexer(self._indexes[name], self._embedders[name])
            report = await indexer.index_directory(folder, max_file_bytes=self._max_file_bytes(name))
            for source, error in report.failed.items():
                log.warning("could not index %s: %s", source, error)
            if report.indexed or report.removed:
                log.info(
                    "index %s: %d files indexed, %d removed, %d chunks embedded",
                    name,
                    len(report.indexed),
                    len(report.removed),
                    report.chunks_embedded,
                )

    def _max_file_bytes(self, index: str) -> int:
        """The smallest limit any business reading `index` sets on its source files."""
        return min(
            b.retrieval.max_file_bytes
            for b in self._config.businesses.values()
            if b.retrieval is not None and b.retrieval.index == index
        )

    async def handle(self, event: Event) -> Sequence[Event]:
        event = job_for(self.name, event)
        if event.current_step != "retrieve":
            raise unknown_step(self.name, event.current_step)
        business = business_of(self._config, event)
        if business.retrieval is None:
            return [event.advance(self.name)]
        retrieval = business.retrieval
        if not self._warm:
            await self.warm_up()
        hits, usage = await self.search(retrieval, _query(event, retrieval), job_id=event.id)
        context = tuple(
            RetrievedChunk(text=hit.chunk.text, source=hit.chunk.source, location=hit.chunk.location, score=hit.score)
            for hit in hits
        )
        span = trace.get_current_span()
        span.set_attribute("relaychain.retrieval.index", retrieval.index)
        span.set_attribute("relaychain.retrieval.search", retrieval.search)
        span.set_attribute("relaychain.retrieval.hits", len(context))
        span.set_attribute("relaychain.retrieval.sources", len({hit.chunk.source for hit in hits}))
        if usage is None:
            return [event.advance(self.name, context=(*event.context, *context))]
        return [
            event.advance(self.name, context=(*event.context, *context), usage=(*event.usage, usage.usage)),
            event.reply(Usage, usage=usage.usage, created_at=usage.paid_at),
        ]

    async def search(
        self, retrieval: RetrievalConfig, query: str, *, job_id: str | None = None
    ) -> tuple[list[Hit], PaidEmbedding | None]:
        """The grouped hits for `query` under `retrieval`'s settings, and what embedding it cost (if billed).

        `job_id`: the job the query belongs to, the journal key of a paid embedding.
        """
        index = self._indexes[retrieval.index]
        candidates = max(CANDIDATES, retrieval.top_k * retrieval.chunks_per_source * 4)
        rankings: list[list[Hit]] = []
        usage = None
        if retrieval.search != "lexical":
            embedder = self._embedders[retrieval.index]
            if isinstance(embedder, MeteredEmbedder):
                usage = await self._paid_embedding(embedder, query, job_id)
                vectors = np.asarray([usage.vector], dtype=np.float32)
            elif isinstance(embedder, QueryEmbedder):
                vectors = await embedder.embed_queries([query])
            else:
                vectors = await embedder.embed([query])
            rankings.append(await index.search(vectors[0], candidates))
        if retrieval.search != "dense":
            rankings.append(await index.search_lexical(terms(query), candidates))
        ranked = rankings[0] if len(rankings) == 1 else fuse(rankings)
        return group_by_source(ranked, retrieval.top_k, retrieval.chunks_per_source), usage

    async def _paid_embedding(self, embedder: MeteredEmbedder, query: str, job_id: str | None) -> PaidEmbedding:
        """The query's vector and usage, from the journal when this job already paid for them."""
        if self._journal is None or job_id is None:
            vectors, usage = await embedder.embed_with_usage([query])
            return PaidEmbedding(vector=vectors[0].tolist(), usage=usage, paid_at=utc_now())
        key = f"{job_id}/{EMBED_STEP}"
        entry = await self._journal.get(key)
        trace.get_current_span().set_attribute("relaychain.journal.replayed", entry is not None)
        if entry is None:
            vectors, usage = await embedder.embed_with_usage([query])
            payload = PaidEmbedding(vector=vectors[0].tolist(), usage=usage, paid_at=utc_now()).model_dump_json()
            entry = await self._journal.record(key, payload)
        return PaidEmbedding.model_validate_json(entry.payload)


class PaidEmbedding(BaseModel):
    """A query embedding that was paid for: journalled, and re-used when its job is redelivered."""

    vector: list[float]
    usage: StepUsage
    paid_at: datetime


def _query(job: Job, retrieval: RetrievalConfig) -> str:
    request = job.request
    if retrieval.query_var is not None:
        value = request.vars.get(retrieval.query_var)
        if not isinstance(value, str) or not value.strip():
            raise AgentError(
                ErrorCode.MISSING_QUERY_VAR,
                f"retrieval needs the text variable {retrieval.query_var!r}",
                details={"variable": retrieval.query_var},
            )
        return value
    return request.text
