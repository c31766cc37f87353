"""How each agent is built from the process's components: the only place agents meet backends.

Stores are PostgreSQL when `postgres_dsn` is set, SQLite under the data dir
otherwise; indexes are pgvector or numpy by the same rule. Everything is
built on first use and shared by the agents of one process.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from relaychain.agents.documents.embedders import embedder_name, open_embedder
from relaychain.agents.documents.embeddings import Embedder
from relaychain.agents.formatter import FormatterAgent
from relaychain.agents.formatting.validate import SchemaRegistry
from relaychain.agents.generator import GeneratorAgent
from relaychain.agents.llm import CompletionRequest, ModelPool
from relaychain.agents.llm.ratelimit import MemoryRateStore, ModelLimiter, PostgresRateStore, RateStore
from relaychain.agents.llm.telemetry import ModelCallTelemetry
from relaychain.agents.memory import MemoryAgent
from relaychain.agents.memory_policies import SummaryResult
from relaychain.agents.moderation import WordLists
from relaychain.agents.moderator import ModeratorAgent
from relaychain.agents.retriever import RetrieverAgent
from relaychain.agents.router import RouterAgent
from relaychain.agents.stores import CostLedger, Turn
from relaychain.agents.stores.history import ConversationStore
from relaychain.agents.stores.journal import CompletionJournal
from relaychain.agents.stores.vectors import VectorIndex
from relaychain.agents.streaming import DeltaPublisher
from relaychain.agents.tokenizer import TokenizerAgent
from relaychain.agents.tokens.counter import TokenCounter, counter_for
from relaychain.agents.tokens.pricing import priced_usage
from relaychain.bus.runtime import Agent
from relaychain.schemas.envelope import utc_now
from relaychain.schemas.events import ChatMessage
from relaychain.settings import Settings
from relaychain.stores import open_conversation_store, open_index, open_journal, open_ledger, unbilled_spool

if TYPE_CHECKING:
    # Only a type here: app.py imports this module to build agents, so a runtime import would close a cycle.
    from relaychain.app import Components

log = logging.getLogger(__name__)


async def ledger(components: Components) -> CostLedger:
    return await _shared_store(components, "ledger", open_ledger)


async def journal(components: Components) -> CompletionJournal:
    return await _shared_store(components, "journal", open_journal)


async def conversation_store(components: Components) -> ConversationStore:
    return await _shared_store(components, "conversations", open_conversation_store)


class _Store(Protocol):
    async def close(self) -> None: ...


StoreT = TypeVar("StoreT", bound=_Store)


async def _shared_store(
    components: Components, key: str, open_store: Callable[[Settings], Awaitable[StoreT]]
) -> StoreT:
    """One store per process, opened on first use and closed with the components."""

    async def build() -> StoreT:
        store = await open_store(components.settings)
        components.on_close(store.close)
        return store

    return await components.once(key, build)


async def model_pool(components: Components) -> ModelPool:
    async def build() -> ModelPool:
        pool = ModelPool(
            components.settings.app,
            components.settings.data_dir,
            factories=components.model_factories,
            on_progress=_progress,
            limiter=await _limiter(components),
            telemetry=_model_telemetry(components),
        )
        components.on_close(pool.aclose)
        return pool

    return await components.once("models", build)


def _model_telemetry(components: Components) -> ModelCallTelemetry:
    telemetry = components.telemetry
    if telemetry is None:
        return ModelCallTelemetry()
    # A meter nobody reads still costs time per call: metrics only when an exporter reads them.
    return ModelCallTelemetry(
        telemetry.tracer_provider, telemetry.meter_provider if telemetry.metrics_enabled else None
    )


async def _limiter(components: Components) -> ModelLimiter | None:
    """Provider limits shared by every generator replica through PostgreSQL when configured, else in process."""
    settings = components.settings
    if all(model.limits is None for model in settings.app.models.values()):
        return None
    store: RateStore
    if settings.postgres_dsn:
        shared = PostgresRateStore(settings.postgres_dsn)
        await shared.migrate()
        store = shared
    else:
        store = MemoryRateStore()
    components.on_close(store.close)
    return ModelLimiter(store)


async def schemas(components: Components) -> SchemaRegistry:
    async def build() -> SchemaRegistry:
        return SchemaRegistry(components.settings.app, components.settings.config_dir)

    return await components.once("schemas", build)


def counters(components: Components) -> Callable[[str], TokenCounter]:
    models = components.settings.app.models
    cache = components.settings.data_dir / "tokenizers"
    cache.mkdir(parents=True, exist_ok=True)
    return lambda name: counter_for(models[name], name, cache)


async def build_router(components: Components) -> Agent:
    app = components.settings.app
    spend = None
    if any(b.daily_budget is not None for b in app.businesses.values()):
        costs = await ledger(components)

        async def spend(business: str, model: str) -> Decimal:
            return await costs.spent(business, model, datetime.now(UTC).date())

    tenant_spend = None
    if any(t.daily_budget is not None for t in app.tenants.values()):
        tenant_costs = await ledger(components)

        async def tenant_spend(tenant: str) -> dict[str, Decimal]:
            return await tenant_costs.tenant_spent(tenant, datetime.now(UTC).date())

    return RouterAgent(
        app, components.prompts, spend, counter_for=counters(components), tenant_spend_today=tenant_spend
    )


async def build_moderator(components: Components) -> Agent:
    lists = WordLists(components.settings.app, components.settings.config_dir)
    await lists.load()
    return ModeratorAgent(components.settings.app, lists)


async def build_memory(components: Components) -> Agent:
    settings = components.settings
    pool = await model_pool(components) if _needs_summaries(components) else None

    async def summarise(model: str, turns: Sequence[Turn], previous: str | None) -> SummaryResult:
        assert pool is not None and settings.app.summary_template is not None
        scope = {"summary": previous, "turns": [m for turn in turns for m in turn.messages()]}
        prompt = components.prompts.render_file(settings.app.summary_template, scope)
        config = settings.app.models[model]
        completion = await pool.complete_with_fallback(
            model,
            CompletionRequest(messages=[ChatMessage(role="user", content=prompt)], max_tokens=config.max_output_tokens),
        )
        usage = priced_usage(
            step="memory.summary",
            model=completion.model,
            price_per_million=settings.app.models[completion.model].price_on(utc_now().date()),
            input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens,
            cached_input_tokens=completion.cached_input_tokens,
            reasoning_tokens=completion.reasoning_tokens,
            latency_ms=completion.latency_ms,
        )
        return SummaryResult(text=completion.text, usage=usage)

    return MemoryAgent(
        settings.app,
        await conversation_store(components),
        counter_for=counters(components),
        summarise=summarise if pool is not None else None,
        journal=await journal(components) if pool is not None else None,
    )


async def build_retriever(components: Components) -> Agent:
    settings = components.settings
    if all(business.retrieval is None for business in settings.app.businesses.values()):
        # The retriever only passes jobs on: loading MiniLM (seconds) would slow every `run` and `chat` for nothing.
        return RetrieverAgent(settings.app, {}, {})
    indexes: dict[str, VectorIndex] = {}
    embedders: dict[str, Embedder] = {}
    sources = {}
    for business in settings.app.businesses.values():
        retrieval = business.retrieval
        if retrieval is None or retrieval.index in indexes:
            continue
        name = embedder_name(settings.app, retrieval.index)
        embedder = await components.once(
            f"embedder:{name}", functools.partial(open_embedder, name, settings.app, settings.data_dir)
        )
        index = open_index(settings, retrieval.index, embedder.dim)
        components.on_close(index.close)
        indexes[retrieval.index], embedders[retrieval.index] = index, embedder
        if retrieval.sources is not None:
            sources[retrieval.index] = settings.resolve(retrieval.sources)
    # Only a hosted embeddings API is paid per call: its query vectors are journalled like completions.
    configured = [settings.app.embedders.get(embedder_name(settings.app, index)) for index in indexes]
    paid = any(embedder is not None and embedder.kind == "openai" for embedder in configured)
    return RetrieverAgent(
        settings.app, indexes, embedders, sources=sources, journal=await journal(components) if paid else None
    )


async def build_tokenizer(components: Components) -> Agent:
    return TokenizerAgent(
        components.settings.app,
        await ledger(components),
        counters(components),
        unbilled=unbilled_spool(components.settings),
    )


async def build_generator(components: Components) -> Agent:
    registry = await schemas(components)
    app = components.settings.app

    def schema_for(business: str) -> dict[str, Any] | None:
        config = app.businesses.get(business)
        return registry[config.output_schema].json_schema if config and config.constrained_decoding else None

    return GeneratorAgent(
        app,
        await model_pool(components),
        components.prompts,
        schema_for=schema_for,
        journal=await journal(components),
        record_content=components.settings.observability.record_content,
        deltas=DeltaPublisher(components.emit) if components.emit is not None else None,
        cancelled=components.cancelled,
    )


async def build_formatter(components: Components) -> Agent:
    return FormatterAgent(components.settings.app, await schemas(components))


BUILDERS: dict[str, Callable[[Components], Awaitable[Agent]]] = {
    "router": build_router,
    "moderator": build_moderator,
    "memory": build_memory,
    "retriever": build_retriever,
    "tokenizer": build_tokenizer,
    "generator": build_generator,
    "formatter": build_formatter,
}


def _needs_summaries(components: Components) -> bool:
    return any(b.memory.kind == "summary" for b in components.settings.app.businesses.values())


def _progress(message: str) -> None:
    # INFO, not WARNING: a normal start-up (the model loading) is no warning, and `run` keeps stderr for what
    # went wrong. `relaychain -v` shows it; a worker logs INFO.
    log.info("%s", message)
