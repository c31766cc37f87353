"""A BERT encoder's forward pass in numpy, for the few texts of a query: no torch to import.

Importing torch and transformers takes about 4 s of CPU, more than a
retrieval query takes with either. A query is a handful of tokens, where
numpy's matrix products are as fast as torch's, so the embedder answers
queries here and loads torch only for bulk indexing. The weights and the
tokenizer are the same files transformers reads (`model.safetensors`,
`tokenizer.json`); vectors agree with transformers' to float32 rounding.

The products run on one BLAS thread. numpy's OpenBLAS splits every product
over all cores, and for a query's dozen rows handing the work to its threads
and waiting for them costs several times the arithmetic: one query took
85-440 ms on two threads of this 2-core machine and 30 ms on one.
"""

from __future__ import annotations

import json
import math
import mmap
import struct
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

__all__ = ["NumpyBert"]

_erf = np.vectorize(math.erf, otypes=[np.float32])

_blas_limit = threading.Lock()
"""The BLAS thread count is the process's: one embedder at a time lowers it and puts back what it found."""


@cache
def _numpy_blas() -> ThreadpoolController:
    """numpy's BLAS libraries (found once: the search walks the process's loaded libraries)."""
    return ThreadpoolController().select(user_api="blas")


class NumpyBert:
    """Mean-pooled, L2-normalised last hidden states of a `BertModel`, one text at a time (no padding)."""

    def __init__(self, path: Path, config: dict[str, Any], *, max_tokens: int) -> None:
        from tokenizers import Tokenizer

        self.dim = int(config["hidden_size"])
        self._heads = int(config["num_attention_heads"])
        self._layers = int(config["num_hidden_layers"])
        self._eps = float(config["layer_norm_eps"])
        self._weights = _mapped_weights(path / "model.safetensors")
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        # As transformers' `tokenizer(texts, truncation=True, max_length=...)`: [CLS] and [SEP] count in the limit.
        tokenizer.enable_truncation(max_length=max_tokens)
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        _numpy_blas()  # found here, on the loading thread, rather than on the first query

    @classmethod
    def open(cls, path: Path, *, max_tokens: int) -> NumpyBert | None:
        """The encoder for the model under `path`, or None unless it is a plain BERT with a fast tokenizer file."""
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        plain = (
            config.get("model_type") == "bert"
            and config.get("hidden_act") == "gelu"
            and config.get("position_embedding_type", "absolute") == "absolute"
        )
        if not plain or not (path / "tokenizer.json").is_file() or not (path / "model.safetensors").is_file():
            return None
        return cls(path, config, max_tokens=max_tokens)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        with _blas_limit, _numpy_blas().limit(limits=1):
            for row, encoding in enumerate(self._tokenizer.encode_batch(list(texts))):
                hidden = self._forward(np.asarray(encoding.ids), np.asarray(encoding.type_ids))
                mean = hidden.mean(axis=0)
                vectors[row] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return vectors

    def _forward(self, ids: np.ndarray, type_ids: np.ndarray) -> np.ndarray:
        w = self._weights
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][: len(ids)]
            + w["embeddings.token_type_embeddings.weight"][type_ids]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        for layer in range(self._layers):
            x = self._layer(x, f"encoder.layer.{layer}.")
        return x

    def _layer(self, x: np.ndarray, prefix: str) -> np.ndarray:
        tokens, width = x.shape
        head = width // self._heads

        def split(name: str) -> np.ndarray:
            return self._linear(x, f"{prefix}attention.self.{name}").reshape(tokens, self._heads, head).swapaxes(0, 1)

        query, key, value = split("query"), split("key"), split("value")
        scores = query @ key.swapaxes(1, 2) / np.float32(math.sqrt(head))
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attended = (scores / scores.sum(axis=-1, keepdims=True)) @ value
        attended = attended.swapaxes(0, 1).reshape(tokens, width)
        x = self._norm(
            self._linear(attended, f"{prefix}attention.output.dense") + x, f"{prefix}attention.output.LayerNorm"
        )
        inner = self._linear(x, f"{prefix}intermediate.dense")
        inner = np.float32(0.5) * inner * (np.float32(1.0) + _erf(inner / np.float32(math.sqrt(2.0))))
        return self._norm(self._linear(inner, f"{prefix}output.dense") + x, f"{prefix}output.LayerNorm")

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        result: np.ndarray = x @ self._weights[f"{name}.weight"].T + self._weights[f"{name}.bias"]
        return result

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        normed = (x - mean) / np.sqrt(variance + np.float32(self._eps))
        result: np.ndarray = normed * self._weights[f"{name}.weight"] + self._weights[f"{name}.bias"]
        return result


_NUMPY_DTYPES = {
    "BOOL": np.bool_,
    "U8": np.uint8,
    "I8": np.int8,
    "I16": np.int16,
    "U16": np.uint16,
    "I32": np.int32,
    "U32": np.uint32,
    "I64": np.int64,
    "U64": np.uint64,
    "F16": np.float16,
    "F32": np.float32,
    "F64": np.float64,
}


def _mapped_weights(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file as read-only arrays over the file's pages, not copies.

    Copying MiniLM's 91 MB took 65-75 ms of every start-up; mapped, a query reads only the pages it uses (of the
    word embeddings, its own tokens' rows), from the OS file cache. A file with a type numpy lacks (bf16) is read
    by safetensors, as before.
    """
    with path.open("rb") as file:
        (header_size,) = struct.unpack("<Q", file.read(8))
        header: dict[str, Any] = json.loads(file.read(header_size))
        header.pop("__metadata__", None)
        if any(info["dtype"] not in _NUMPY_DTYPES for info in header.values()):
            from safetensors.numpy import load_file

            return load_file(path)
        pages = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    start = 8 + header_size
    weights = {}
    for name, info in header.items():
        dtype = np.dtype(_NUMPY_DTYPES[info["dtype"]])
        begin, end = info["data_offsets"]
        weights[name] = np.frombuffer(
            pages, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=start + begin
        ).reshape(info["shape"])
    return weights
