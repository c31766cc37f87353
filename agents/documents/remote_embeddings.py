"""Embeddings from an OpenAI-compatible embeddings API, through the `openai` SDK.

Each call's input tokens (the provider's `usage.prompt_tokens`) are priced
at the embedder's per-million input price; the retriever turns a query's
usage into a `Usage` event (step `embed`) for the cost ledger. A call that
fails transiently (timeout, 429, 5xx) raises `RetryableError`, anything else
`AgentError`: the caller always gets an answer.

Chunking needs the model's tokenizer; OpenAI's embedding models use
cl100k_base, built offline by `agents.tokens.encodings`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from relaychain.agents.tokens.encodings import load_encoding
from relaychain.agents.tokens.pricing import priced_usage
from relaychain.bus.errors import AgentError, RetryableError
from relaychain.schemas import StepUsage
from relaychain.schemas.config import EmbedderConfig
from relaychain.schemas.errors import ErrorCode

__all__ = ["EMBED_STEP", "OpenAIEmbedder"]

EMBED_STEP = "embed"


class _TiktokenTokenizer:
    def __init__(self) -> None:
        self._encoding = load_encoding("cl100k_base")

    def count(self, text: str) -> int:
        return len(self._encoding.encode_ordinary(text))


class OpenAIEmbedder:
    def __init__(self, name: str, config: EmbedderConfig, *, api_key: str | None = None) -> None:
        assert config.model is not None and config.base_url is not None and config.price is not None  # validated
        self.name = name
        self.model = config.model
        self._config = config
        self._price = config.price
        key = api_key if api_key is not None else os.environ.get(config.api_key_env)
        if not key:
            raise ValueError(f"embedder {name!r}: no API key, set the environment variable {config.api_key_env}")
        # Imported here: the SDK costs 0.4 s of every start-up that opens no hosted embedder.
        import openai

        self._client = openai.AsyncOpenAI(api_key=key, base_url=config.base_url, max_retries=0)
        self._dim = config.dimensions
        self.tokenizer = _TiktokenTokenizer()

    @classmethod
    async def load(cls, name: str, config: EmbedderConfig, **options: Any) -> OpenAIEmbedder:
        """Ready to embed; without `dimensions` configured, one call asks the model its vector size."""
        embedder = cls(name, config, **options)
        if embedder._dim is None:
            vectors, _ = await embedder.embed_with_usage(["dimensions"])
            embedder._dim = int(vectors.shape[1])
        return embedder

    @property
    def dim(self) -> int:
        assert self._dim is not None, "use `await OpenAIEmbedder.load(...)`"
        return self._dim

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors, _ = await self.embed_with_usage(texts)
        return vectors

    async def embed_with_usage(self, texts: Sequence[str]) -> tuple[np.ndarray, StepUsage]:
        """The vectors and what they cost, in batches of `batch_size` texts."""
        parts: list[np.ndarray] = []
        tokens = 0
        started = time.perf_counter()
        size = self._config.batch_size
        for begin in range(0, len(texts), size):
            vectors, used = await self._call(list(texts[begin : begin + size]))
            parts.append(vectors)
            tokens += used
        usage = priced_usage(
            step=EMBED_STEP,
            model=self.name,
            price_per_million=self._price,
            input_tokens=tokens,
            output_tokens=0,
            latency_ms=(time.perf_counter() - started) * 1000,
        )
        dim = self._dim or 0
        return (np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)), usage

    async def _call(self, texts: list[str]) -> tuple[np.ndarray, int]:
        import openai

        dimensions = self._config.dimensions or openai.omit
        try:
            response = await self._client.embeddings.create(
                model=self.model, input=texts, dimensions=dimensions, timeout=self._config.timeout_s
            )
        except (
            openai.APITimeoutError,
            openai.APIConnectionError,
            openai.RateLimitError,
            openai.InternalServerError,
        ) as exc:
            raise RetryableError(ErrorCode.EMBEDDER_UNAVAILABLE, f"embedder {self.name}: {type(exc).__name__}") from exc
        except openai.APIStatusError as exc:
            raise AgentError(
                ErrorCode.EMBEDDER_REJECTED,
                f"embedder {self.name}: HTTP {exc.status_code}",
                details={"status": exc.status_code},
            ) from exc
        ordered = sorted(response.data, key=lambda item: item.index)
        vectors = np.asarray([item.embedding for item in ordered], dtype=np.float32)
        # Providers normalise, mostly; the index's inner product needs unit vectors, always.
        vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        return vectors, int(response.usage.prompt_tokens if response.usage else 0)

    async def aclose(self) -> None:
        await self._client.close()
