"""MiniLM's query vectors from numpy: the same as transformers', without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from relaychain.agents.documents.embeddings import TransformerEmbedder, default_model_path
from relaychain.agents.documents.numpy_bert import NumpyBert, _mapped_weights

TEXTS = [
    "Halvorsen Nordkap E7",
    "A family of four wants a long-range electric SUV for weekend trips",
    "麒麟腾云 S9 的续航里程是多少？",
    "Ünïcödé café, naïve façade",
    "",
    "range " * 400,  # past max_tokens: truncated the same way
]


@pytest.mark.slow
def test_vectors_match_transformers(embedder: TransformerEmbedder) -> None:
    bert = NumpyBert.open(default_model_path(), max_tokens=embedder.max_tokens)
    assert bert is not None
    ours = bert.embed(TEXTS)
    theirs = np.concatenate([embedder.embed_blocking([text]) for text in TEXTS] + [embedder.embed_blocking(TEXTS)])
    assert np.abs(ours - theirs[: len(TEXTS)]).max() < 1e-5
    assert np.abs(ours - theirs[len(TEXTS) :]).max() < 1e-5, "the batched, padded path agrees too"


def test_a_query_does_not_import_torch() -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from relaychain.agents.documents.embeddings import TransformerEmbedder

        async def main():
            embedder = await TransformerEmbedder.load()
            (vector,) = await embedder.embed(["Halvorsen Nordkap E7"])
            print(len(vector), round(float(vector @ vector), 4), "torch" in sys.modules)

        asyncio.run(main())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["384", "1.0", "False"]


def test_only_plain_bert_models_get_the_numpy_path(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "xlm-roberta", "hidden_act": "gelu"}))
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert NumpyBert.open(tmp_path, max_tokens=256) is None
    assert NumpyBert.open(tmp_path / "missing", max_tokens=256) is None


def test_mapped_weights_are_the_files_tensors(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = {
        "weight": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "half": np.linspace(-1, 1, 5, dtype=np.float16),
        "ids": np.arange(7, dtype=np.int64)[None, :],
        "flags": np.array([True, False]),
    }
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "np"})
    mapped = _mapped_weights(tmp_path / "model.safetensors")
    read = load_file(tmp_path / "model.safetensors")
    assert mapped.keys() == read.keys() == tensors.keys()
    for name, tensor in read.items():
        assert mapped[name].dtype == tensor.dtype and mapped[name].shape == tensor.shape
        assert np.array_equal(mapped[name], tensor)
        assert not mapped[name].flags.writeable, "the file's pages are shared, never written"
