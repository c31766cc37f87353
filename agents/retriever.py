"""The retriever agent: the business's documents most relevant to the request, attached to the job.

Step `retrieve` embeds the query (the request's input, or the template
variable the business names in `retrieval.query_var`), searches the
business's index, and puts the top-k chunks with their scores and sources in
`job.context`, where prompt templates can cite them. The composition root
opens the indexes (in-process numpy or pgvector) and the embedder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry import trace

from relaychain.agents.documents.embeddings import Embedder
from relaychain.agents.stores.vectors import VectorIndex
from relaychain.bus.errors import AgentError
from relaychain.schemas import Event, Job, RetrievedChunk
from relaychain.schemas.config import AppConfig, RetrievalConfig
from relaychain.schemas.errors import ErrorCode

__all__ = ["RetrieverAgent"]


class RetrieverAgent:
    name = "retriever"

    def __init__(self, config: AppConfig, indexes: Mapping[str, VectorIndex], embedder: Embedder) -> None:
        """`indexes` maps index names (from `retrieval.index`) to open indexes; a missing one fails at start-up."""
        wanted = {b.retrieval.index for b in config.businesses.values() if b.retrieval is not None}
        missing = wanted - set(indexes)
        if missing:
            raise ValueError(f"no open index for {sorted(missing)}")
        self._config = config
        self._indexes = indexes
        self._embedder = embedder

    async def handle(self, event: Event) -> Sequence[Event]:
        if not isinstance(event, Job):
            raise AgentError(ErrorCode.UNEXPECTED_EVENT, f"retriever handles jobs, not {event.type} events")
        if event.current_step != "retrieve":
            raise AgentError(ErrorCode.UNKNOWN_STEP, f"retriever has no step {event.current_step!r}")
        business = self._config.businesses.get(event.business)
        if business is None:
            raise AgentError(
                ErrorCode.UNKNOWN_BUSINESS, f"no business {event.business!r}", details={"business": event.business}
            )
        if business.retrieval is None:
            return [event.advance(self.name)]
        retrieval = business.retrieval
        query = _query(event, retrieval)
        (vector,) = await self._embedder.embed([query])
        hits = await self._indexes[retrieval.index].search(vector, retrieval.top_k)
        context = tuple(
            RetrievedChunk(text=hit.chunk.text, source=hit.chunk.source, location=hit.chunk.location, score=hit.score)
            for hit in hits
        )
        span = trace.get_current_span()
        span.set_attribute("relaychain.retrieval.index", retrieval.index)
        span.set_attribute("relaychain.retrieval.hits", len(context))
        return [event.advance(self.name, context=(*event.context, *context))]


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
    if request.input is not None:
        return request.input
    users = [message.content for message in request.messages if message.role == "user"]
    return users[-1] if users else request.messages[-1].content
