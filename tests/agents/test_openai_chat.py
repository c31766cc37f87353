"""The OpenAI client through the real `openai` SDK over HTTP, against a scripted local server."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from relaychain.agents.llm import (
    CompletionRequest,
    ModelPool,
    ModelRateLimited,
    ModelRequestRejected,
    ModelServerError,
    ModelTimeout,
    ModelUnavailable,
    OpenAIChatModel,
)
from relaychain.agents.tokens import load_encoding
from relaychain.schemas import ChatMessage
from relaychain.schemas.config import AppConfig, ModelConfig
from tests.support.openai_server import Fail, OpenAITestServer, Reply

QUESTION = (ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hello?"))


def ask(max_tokens: int = 10, **fields: Any) -> CompletionRequest:
    return CompletionRequest(messages=QUESTION, max_tokens=max_tokens, **fields)


def model_config(server: OpenAITestServer, **overrides: Any) -> ModelConfig:
    fields: dict[str, Any] = {
        "provider": "openai-compatible",
        "base_url": server.base_url,
        "tokenizer": "tiktoken:cl100k_base",
        "context_window": 8192,
        "max_output_tokens": 512,
        "price": {"input_per_million": "1", "output_per_million": "2"},
        "timeout_s": 5,
    }
    return ModelConfig.model_validate({**fields, **overrides})


def client(server: OpenAITestServer, name: str = "remote", **overrides: Any) -> OpenAIChatModel:
    return OpenAIChatModel(name, model_config(server, **overrides), api_key="sk-test-secret")


async def test_completion_text_and_usage_are_the_servers(openai_server: OpenAITestServer) -> None:
    openai_server.script("remote", Reply("Hi there.", input_tokens=17, output_tokens=4, response_model="remote-2024"))
    model = client(openai_server)
    try:
        completion = await model.complete(ask(50, temperature=0.2))
    finally:
        await model.aclose()
    assert (completion.text, completion.input_tokens, completion.output_tokens) == ("Hi there.", 17, 4)
    assert (completion.model, completion.response_model, completion.finish_reason) == ("remote", "remote-2024", "stop")
    (request,) = openai_server.requests
    assert request.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello?"},
    ]
    assert request.body["max_tokens"] == 50 and request.body["temperature"] == 0.2
    assert request.authorization == "Bearer sk-test-secret"


async def test_model_id_is_sent_when_it_differs_from_the_config_name(openai_server: OpenAITestServer) -> None:
    openai_server.script("ernie-3.5-8k", Reply("ok"))
    model = client(openai_server, name="ernie", model_id="ernie-3.5-8k")
    try:
        completion = await model.complete(ask())
    finally:
        await model.aclose()
    assert openai_server.requests[0].model == "ernie-3.5-8k"
    assert completion.model == "ernie"


async def test_streaming_hands_out_tokens_and_reports_usage(openai_server: OpenAITestServer) -> None:
    openai_server.script("remote", Reply("one two three four", input_tokens=9, output_tokens=4, finish_reason="length"))
    tokens: list[str] = []

    async def on_delta(text: str) -> None:
        tokens.append(text)

    model = client(openai_server)
    try:
        completion = await model.complete(ask(4, on_delta=on_delta))
    finally:
        await model.aclose()
    assert tokens == ["one", " two", " three", " four"]
    assert completion.text == "one two three four"
    assert (completion.input_tokens, completion.output_tokens, completion.finish_reason) == (9, 4, "length")
    (request,) = openai_server.requests
    assert request.stream and request.body["stream_options"] == {"include_usage": True}


async def test_rate_limit_is_one_attempt_raising_a_retryable_error_with_retry_after(
    openai_server: OpenAITestServer,
) -> None:
    openai_server.script("remote", Fail(429, retry_after_s=2.5))
    model = client(openai_server)
    try:
        with pytest.raises(ModelRateLimited) as caught:
            await model.complete(ask())
    finally:
        await model.aclose()
    # The runtime's backoff retries the step (one retry layer); it waits as the server asked.
    assert caught.value.retryable and caught.value.code == "model_rate_limited"
    assert caught.value.retry_after_s == 2.5
    assert openai_server.attempts("remote") == 1


async def test_server_error_is_one_attempt_and_retryable(openai_server: OpenAITestServer) -> None:
    openai_server.script("remote", Fail(500, "boom"))
    model = client(openai_server)
    try:
        with pytest.raises(ModelServerError) as caught:
            await model.complete(ask())
    finally:
        await model.aclose()
    assert caught.value.code == "model_server_error" and caught.value.retryable
    assert caught.value.retry_after_s is None
    assert caught.value.details == {"model": "remote", "status": 500}
    assert openai_server.attempts("remote") == 1


async def test_bad_request_is_final(openai_server: OpenAITestServer) -> None:
    openai_server.script("remote", Fail(400, "context too long"))
    model = client(openai_server)
    try:
        with pytest.raises(ModelRequestRejected, match="context too long") as caught:
            await model.complete(ask())
    finally:
        await model.aclose()
    assert not caught.value.retryable and openai_server.attempts("remote") == 1


async def test_timeout_is_a_retryable_typed_error(openai_server: OpenAITestServer) -> None:
    openai_server.script("remote", Reply("too late", delay_s=1.0))
    model = client(openai_server)
    try:
        with pytest.raises(ModelTimeout) as caught:
            await model.complete(ask(timeout_s=0.2))
    finally:
        await model.aclose()
    assert caught.value.code == "model_timeout" and caught.value.retryable
    assert caught.value.details == {"model": "remote", "timeout_s": 0.2}


async def test_streaming_timeout_is_a_typed_error(openai_server: OpenAITestServer) -> None:
    openai_server.script("remote", Reply("too late", delay_s=1.0))
    model = client(openai_server)

    async def ignore(_: str) -> None:
        pass

    try:
        with pytest.raises(ModelTimeout):
            await model.complete(ask(timeout_s=0.2, on_delta=ignore))
    finally:
        await model.aclose()


async def test_a_stream_that_breaks_after_text_was_sent_is_not_retryable(openai_server: OpenAITestServer) -> None:
    openai_server.script("remote", Reply("one two three four five six", chunk_delay_s=0.1))
    model = client(openai_server)
    seen: list[str] = []

    async def on_delta(text: str) -> None:
        seen.append(text)

    try:
        with pytest.raises(ModelServerError) as caught:
            await model.complete(ask(timeout_s=0.25, on_delta=on_delta))
    finally:
        await model.aclose()
    assert seen and caught.value.details["streamed"] and not caught.value.retryable


async def test_cancelling_closes_the_stream_and_bills_what_was_generated(openai_server: OpenAITestServer) -> None:
    text = " ".join(f"word{i}" for i in range(40))
    openai_server.script("remote", Reply(text, chunk_delay_s=0.05))
    model = client(openai_server)
    cancelled = asyncio.Event()
    seen: list[str] = []

    async def on_delta(piece: str) -> None:
        seen.append(piece)
        if len(seen) == 3:
            cancelled.set()

    try:
        completion = await model.complete(ask(100, on_delta=on_delta, cancelled=cancelled))
    finally:
        await model.aclose()
    assert completion.finish_reason == "cancelled"
    assert completion.text == "".join(seen) and len(seen) == 3
    # Billed as the provider bills it: the prompt with the model's own tokenizer, and the tokens sent.
    assert completion.input_tokens > 0
    assert completion.output_tokens == len(load_encoding("cl100k_base").encode(completion.text))


async def test_missing_api_key_is_unavailable_and_the_key_never_shows(openai_server: OpenAITestServer) -> None:
    without_key = OpenAIChatModel("remote", model_config(openai_server, api_key_env="NO_SUCH_KEY"), api_key=None)
    with pytest.raises(ModelUnavailable, match="NO_SUCH_KEY"):
        await without_key.complete(ask())
    assert "sk-test-secret" not in repr(client(openai_server))


async def test_json_schema_becomes_response_format_for_openai_only(openai_server: OpenAITestServer) -> None:
    schema = {"title": "Push", "type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    openai_model = client(openai_server, provider="openai")
    compatible = client(openai_server)
    try:
        await openai_model.complete(ask(json_schema=schema))
        await compatible.complete(ask(json_schema=schema))
    finally:
        await openai_model.aclose()
        await compatible.aclose()
    to_openai, to_compatible = openai_server.requests
    assert to_openai.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Push", "schema": schema, "strict": False},
    }
    assert "response_format" not in to_compatible.body


def pool_config(server: OpenAITestServer) -> AppConfig:
    def remote(fallback: str | None, **extra: Any) -> dict[str, Any]:
        return {**model_config(server, fallback=fallback, **extra).model_dump(mode="json")}

    return AppConfig.model_validate(
        {
            "models": {
                "primary": remote("offline"),
                "offline": remote("backup", available=False),
                "backup": remote(None, max_output_tokens=100),
            },
            "businesses": {},
            "output_schemas": {},
        }
    )


async def test_pool_falls_back_past_a_failing_and_an_unavailable_model(
    openai_server: OpenAITestServer, tmp_path: Path
) -> None:
    openai_server.script("primary", Fail(503))
    openai_server.script("backup", Reply("from the backup", input_tokens=7, output_tokens=2))
    pool = ModelPool(pool_config(openai_server), tmp_path, env={"OPENAI_API_KEY": "sk-test"})
    try:
        completion = await pool.complete_with_fallback("primary", ask(500))
    finally:
        await pool.aclose()
    assert (completion.model, completion.text) == ("backup", "from the backup")
    assert openai_server.attempts("primary") == 1  # one attempt; retries are the runtime's
    assert openai_server.attempts("offline") == 0
    backup_request = openai_server.requests[-1]
    assert backup_request.body["max_tokens"] == 100  # capped at the fallback's own limit


async def test_pool_raises_the_last_models_timeout(openai_server: OpenAITestServer, tmp_path: Path) -> None:
    openai_server.script("primary", Fail(500))
    openai_server.script("backup", Reply("slow", delay_s=1.0))
    pool = ModelPool(pool_config(openai_server), tmp_path, env={"OPENAI_API_KEY": "sk-test"})
    try:
        with pytest.raises(ModelTimeout) as caught:
            await pool.complete_with_fallback("primary", ask(timeout_s=0.2))
    finally:
        await pool.aclose()
    assert caught.value.code == "model_timeout" and caught.value.details["model"] == "backup"


async def test_pool_does_not_fall_back_on_a_rejected_request(openai_server: OpenAITestServer, tmp_path: Path) -> None:
    openai_server.script("primary", Fail(422, "bad messages"))
    pool = ModelPool(pool_config(openai_server), tmp_path, env={"OPENAI_API_KEY": "sk-test"})
    try:
        with pytest.raises(ModelRequestRejected):
            await pool.complete_with_fallback("primary", ask())
    finally:
        await pool.aclose()
    assert openai_server.attempts("backup") == 0


def test_pool_chain_skips_unavailable_models(openai_server: OpenAITestServer, tmp_path: Path) -> None:
    pool = ModelPool(pool_config(openai_server), tmp_path, env={})
    assert pool.chain("primary") == ["primary", "backup"]
    assert pool.model_config("backup").price.input_per_million == Decimal(1)


async def test_pool_load_builds_the_client_and_checks_its_key(openai_server: OpenAITestServer, tmp_path: Path) -> None:
    pool = ModelPool(pool_config(openai_server), tmp_path, env={})
    with pytest.raises(ModelUnavailable, match="OPENAI_API_KEY"):
        await pool.load("primary")
    keyed = ModelPool(pool_config(openai_server), tmp_path, env={"OPENAI_API_KEY": "sk-test"})
    await keyed.load("primary")
    await keyed.aclose()
