"""Open the embedder an index's config names (`embedders` in the app config), loaded and ready."""

from __future__ import annotations

from pathlib import Path

from relaychain.agents.documents.causal_embeddings import CausalLMEmbedder
from relaychain.agents.documents.e5_embeddings import E5Embedder
from relaychain.agents.documents.embeddings import Embedder, TransformerEmbedder
from relaychain.agents.documents.remote_embeddings import OpenAIEmbedder
from relaychain.schemas.config import AppConfig

__all__ = ["DEFAULT_EMBEDDER", "close_embedder", "configured_or_encoder", "embedder_name", "open_embedder"]

DEFAULT_EMBEDDER = "all-minilm-l6-v2"
"""The name an index's embedder goes by when its retrieval config names none."""


def embedder_name(config: AppConfig, index: str) -> str:
    """The embedder that fills `index` (one per index, checked by the config)."""
    for business in config.businesses.values():
        if business.retrieval is not None and business.retrieval.index == index:
            return business.retrieval.embedder or DEFAULT_EMBEDDER
    return DEFAULT_EMBEDDER


async def open_embedder(name: str, config: AppConfig, data_dir: Path) -> Embedder:
    """`name`: an `embedders` entry, or `DEFAULT_EMBEDDER` for all-MiniLM-L6-v2 from its PyPI package."""
    if name == DEFAULT_EMBEDDER and name not in config.embedders:
        return await TransformerEmbedder.load()
    embedder = config.embedders[name]
    match embedder.kind:
        case "encoder":
            return await TransformerEmbedder.load(
                embedder.path, batch_size=embedder.batch_size, max_tokens=embedder.max_tokens
            )
        case "causal-lm":
            assert embedder.model is not None  # validated with the config
            return await CausalLMEmbedder.load(
                embedder.model,
                config.models[embedder.model],
                data_dir,
                max_tokens=embedder.max_tokens,
                batch_size=embedder.batch_size,
            )
        case "openai":
            return await OpenAIEmbedder.load(name, embedder)
        case "multilingual-e5":
            return await E5Embedder.load(batch_size=embedder.batch_size)


async def configured_or_encoder(config: AppConfig, index: str, data_dir: Path, encoder: Path | None) -> Embedder:
    """The embedder `index` is configured with, unless a local encoder directory is given explicitly."""
    if encoder is not None:
        return await TransformerEmbedder.load(encoder)
    return await open_embedder(embedder_name(config, index), config, data_dir)


async def close_embedder(embedder: Embedder) -> None:
    """Release an embedder's worker thread or HTTP client."""
    if isinstance(embedder, OpenAIEmbedder):
        await embedder.aclose()
    elif isinstance(embedder, TransformerEmbedder | E5Embedder | CausalLMEmbedder):
        embedder.close()
