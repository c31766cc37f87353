"""Embeddings from a local causal LM, as the project brief computes them.

A text's vector is the mean of the model's last hidden state over its
tokens, L2-normalised. The weights are the chat model's own: the embedder
runs on the same process-wide engine as the generator (`agents.llm.local`),
so they are found, converted and cached exactly as for generation, loaded
once, and inference never runs on the event loop.

Texts are tokenised one by one and right-padded by hand: a chat tokenizer
often has no pad token, and under causal attention a real token never sees
the padding after it, so the mean over real tokens is unaffected.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from relaychain.agents.documents.embeddings import PlainTokenizer
from relaychain.agents.llm.local import default_registry
from relaychain.schemas.config import ModelConfig

__all__ = ["CausalLMEmbedder"]


class CausalLMEmbedder:
    def __init__(
        self, name: str, config: ModelConfig, data_dir: Path, *, max_tokens: int = 256, batch_size: int = 16
    ) -> None:
        self.name = name
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._engine = default_registry.engine(
            name,
            config,
            data_dir,
            max_queue=64,
            threads=config.threads or os.cpu_count() or 1,
            on_progress=None,
        )
        self._loaded: Any = None
        self.tokenizer: PlainTokenizer | None = None

    @classmethod
    async def load(cls, name: str, config: ModelConfig, data_dir: Path, **options: Any) -> CausalLMEmbedder:
        embedder = cls(name, config, data_dir, **options)
        embedder._loaded = await asyncio.wrap_future(embedder._engine.thread.submit(embedder._engine.ensure_loaded))
        embedder.tokenizer = PlainTokenizer(embedder._loaded.tokenizer)
        return embedder

    @property
    def dim(self) -> int:
        return int(self._loaded.model.config.hidden_size)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.wrap_future(self._engine.thread.submit(self.embed_blocking, list(texts)))

    def embed_blocking(self, texts: Sequence[str]) -> np.ndarray:
        """On the engine's thread (or a bench's): batches of similar lengths."""
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for begin in range(0, len(order), self.batch_size):
            batch = order[begin : begin + self.batch_size]
            vectors[batch] = self._embed_batch([texts[i] for i in batch])
        return vectors

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        tokenizer, model = self._loaded.tokenizer, self._loaded.model
        ids = [
            torch.tensor(tokenizer.encode(text, add_special_tokens=False)[: self.max_tokens] or [0]) for text in texts
        ]
        lengths = torch.tensor([len(i) for i in ids])
        input_ids = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=0)
        mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
        with torch.inference_mode():
            hidden = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean.float(), p=2, dim=1).numpy()

    def close(self) -> None:
        """The engine is shared with the generator and outlives this embedder."""
