"""The generator agent on jobs, against the OpenAI-compatible test server over real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relaychain.agents.generator import GeneratorAgent
from relaychain.agents.llm import ModelPool, ModelServerError, OpenAIChatModel
from relaychain.agents.prompts import PromptLibrary
from relaychain.agents.stores.journal import SqliteJournal
from relaychain.bus.errors import AgentError, RetryableError
from relaychain.schemas import ChatMessage, Job, Request, RequestOptions, RetrievedChunk, Usage, derived_id
from relaychain.schemas.config import AppConfig, ModelConfig, Provider
from tests.support.openai_server import Fail, OpenAITestServer, Reply

SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}


def app_config(server: OpenAITestServer) -> AppConfig:
    def model(price_in: str, price_out: str, **extra: Any) -> dict[str, Any]:
        return {
            "provider": "openai",
            "base_url": server.base_url,
            "tokenizer": "tiktoken:o200k_base",
            "context_window": 16000,
            "max_output_tokens": 300,
            "price": {"input_per_million": price_in, "output_per_million": price_out, "currency": "USD"},
            **extra,
        }

    return AppConfig.model_validate(
        {
            "models": {"gpt-4o": model("2.50", "10.00", fallback="gpt-4o-mini"), "gpt-4o-mini": model("0.15", "0.60")},
            "businesses": {
                "push": {
                    "default_model": "gpt-4o",
                    "allowed_models": ["gpt-4o", "gpt-4o-mini"],
                    "templates": {"default": "push.j2"},
                    "output_schema": "push",
                    "steps": ["generate", "format"],
                },
                "blog": {
                    "default_model": "gpt-4o",
                    "allowed_models": ["gpt-4o"],
                    "templates": {"default": "push.j2"},
                    "output_schema": "push",
                    "steps": ["retrieve", "generate.opening", "generate.ending", "format"],
                    "chain": [
                        {"name": "opening", "template": "opening.j2", "max_tokens": 120},
                        {"name": "ending", "template": "ending.j2"},
                    ],
                    "constrained_decoding": True,
                },
            },
            "output_schemas": {"push": "push.json"},
        }
    )


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    (tmp_path / "push.j2").write_text("Write a push for {{ input }}")
    (tmp_path / "opening.j2").write_text(
        "Open a post on {{ car }}.{% for c in context %} Fact: {{ c.text }}{% endfor %}"
    )
    (tmp_path / "ending.j2").write_text("End the post that opens: {{ outputs.opening }}")
    return tmp_path


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
async def pool(openai_server: OpenAITestServer, tmp_path: Path) -> AsyncIterator[ModelPool]:
    def remote(name: str, config: ModelConfig) -> OpenAIChatModel:
        return OpenAIChatModel(name, config, api_key="sk-test")

    models = ModelPool(app_config(openai_server), tmp_path, factories={Provider.OPENAI: remote})
    yield models
    await models.aclose()


def generator(pool: ModelPool, templates: Path, *, record_content: bool = False) -> GeneratorAgent:
    return GeneratorAgent(
        pool.config,
        pool,
        PromptLibrary(pool.config, templates),
        schema_for=lambda _: SCHEMA,
        record_content=record_content,
    )


def push_job(**request: Any) -> Job:
    req = Request(business="push", input="the autumn sale", **request)
    prompt = (
        ChatMessage(role="system", content="You write pushes."),
        ChatMessage(role="user", content="Write a push for the autumn sale"),
    )
    history = (
        ChatMessage(role="user", content="earlier question"),
        ChatMessage(role="assistant", content="earlier answer"),
    )
    return req.reply(Job, request=req, model="gpt-4o", prompt=prompt, history=history, slip=("generate", "format"))


def handled(exporter: InMemorySpanExporter) -> ReadableSpan:
    (span,) = exporter.get_finished_spans()
    return span


async def test_generate_puts_text_usage_and_span_attributes(
    openai_server: OpenAITestServer,
    pool: ModelPool,
    templates: Path,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    openai_server.script(
        "gpt-4o", Reply('{"title": "Sale!"}', input_tokens=1200, output_tokens=80, response_model="gpt-4o-2024-08-06")
    )
    provider, exporter = spans
    job = push_job(options=RequestOptions(max_tokens=100, temperature=0.3))
    with provider.get_tracer("test").start_as_current_span("generator generate"):
        forwarded, usage_event = await generator(pool, templates).handle(job)

    assert isinstance(forwarded, Job) and isinstance(usage_event, Usage)
    assert forwarded.outputs == {"generate": '{"title": "Sale!"}'}
    assert forwarded.slip == ("format",) and forwarded.results[-1].agent == "generator"
    (usage,) = forwarded.usage
    assert usage == usage_event.usage
    assert (usage.step, usage.model, usage.input_tokens, usage.output_tokens) == ("generate", "gpt-4o", 1200, 80)
    assert (usage.input_cost, usage.output_cost, usage.currency) == (Decimal("0.003"), Decimal("0.0008"), "USD")
    assert usage_event.request_id == job.request_id

    (request,) = openai_server.requests
    roles = [(m["role"], m["content"]) for m in request.body["messages"]]
    assert roles == [
        ("system", "You write pushes."),
        ("user", "earlier question"),
        ("assistant", "earlier answer"),
        ("user", "Write a push for the autumn sale"),
    ]
    assert request.body["max_tokens"] == 100 and request.body["temperature"] == 0.3
    assert request.body["response_format"]["json_schema"]["schema"] == SCHEMA

    attributes = handled(exporter).attributes or {}
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o"
    assert attributes["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (1200, 80)
    assert attributes["gen_ai.request.max_tokens"] == 100
    assert tuple(attributes["gen_ai.response.finish_reasons"]) == ("stop",)
    assert attributes["relaychain.cost"] == pytest.approx(0.0038)
    assert attributes["relaychain.cost.currency"] == "USD"
    assert "gen_ai.input.messages" not in attributes and "gen_ai.output.messages" not in attributes


async def test_cached_and_reasoning_tokens_from_the_provider_are_priced_and_on_the_span(
    openai_server: OpenAITestServer,
    tmp_path: Path,
    templates: Path,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    config = app_config(openai_server)
    priced = config.models["gpt-4o"].model_copy(
        update={"price": config.models["gpt-4o"].price.model_copy(update={"cached_input_per_million": Decimal("1.25")})}
    )
    config = config.model_copy(update={"models": {**config.models, "gpt-4o": priced}})
    models = ModelPool(config, tmp_path, factories={Provider.OPENAI: lambda n, c: OpenAIChatModel(n, c, api_key="k")})
    openai_server.script(
        "gpt-4o",
        Reply('{"title": "x"}', input_tokens=1_000, output_tokens=500, cached_tokens=800, reasoning_tokens=300),
    )
    provider, exporter = spans
    try:
        with provider.get_tracer("test").start_as_current_span("generator generate"):
            _, usage_event = await generator(models, templates).handle(push_job())
    finally:
        await models.aclose()
    usage = usage_event.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens, usage.reasoning_tokens) == (
        1000,
        800,
        500,
        300,
    )
    # 200 at 2.50 + 800 cached at 1.25 per million; 500 output (300 of them reasoning) at 10.00 per million.
    assert (usage.input_cost, usage.output_cost) == (Decimal("0.00150000"), Decimal("0.00500000"))
    assert usage.price is not None and usage.price.cached_input_per_million == Decimal("1.25")
    attributes = handled(exporter).attributes or {}
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 800
    assert attributes["gen_ai.usage.reasoning.output_tokens"] == 300


async def test_content_is_on_the_span_only_when_opted_in(
    openai_server: OpenAITestServer,
    pool: ModelPool,
    templates: Path,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    openai_server.script("gpt-4o", Reply("the answer"))
    provider, exporter = spans
    with provider.get_tracer("test").start_as_current_span("generator generate"):
        await generator(pool, templates, record_content=True).handle(push_job())
    attributes = handled(exporter).attributes or {}
    assert json.loads(str(attributes["gen_ai.input.messages"]))[-1] == {
        "role": "user",
        "content": "Write a push for the autumn sale",
    }
    assert json.loads(str(attributes["gen_ai.output.messages"]))[0]["content"] == "the answer"


async def test_fallback_model_answers_and_is_priced_as_itself(
    openai_server: OpenAITestServer,
    pool: ModelPool,
    templates: Path,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    openai_server.script("gpt-4o", Fail(500))
    openai_server.script("gpt-4o-mini", Reply("cheaper", input_tokens=1_000_000, output_tokens=1_000_000))
    provider, exporter = spans
    with provider.get_tracer("test").start_as_current_span("generator generate"):
        forwarded, _ = await generator(pool, templates).handle(push_job())
    assert isinstance(forwarded, Job) and forwarded.model == "gpt-4o-mini"
    (usage,) = forwarded.usage
    assert (usage.model, usage.input_cost, usage.output_cost) == ("gpt-4o-mini", Decimal("0.15"), Decimal("0.60"))
    span = handled(exporter)
    assert (span.attributes or {})["gen_ai.request.model"] == "gpt-4o"
    assert [e.name for e in span.events] == ["relaychain.model.fallback"]


async def test_chain_steps_render_their_templates_with_context_and_earlier_outputs(
    openai_server: OpenAITestServer, pool: ModelPool, templates: Path
) -> None:
    openai_server.script("gpt-4o", Reply("The EV7 is quiet."), Reply("Buy one."))
    req = Request(business="blog", input="a blog post", vars={"car": "Aurora EV7"})
    job = req.reply(
        Job,
        request=req,
        model="gpt-4o",
        context=(RetrievedChunk(text="range 600 km", source="ev7.pdf", score=0.9),),
        slip=("generate.opening", "generate.ending", "format"),
    )
    agent = generator(pool, templates)
    opened, _ = await agent.handle(job)
    assert isinstance(opened, Job)
    ended, _ = await agent.handle(opened)
    assert isinstance(ended, Job)

    assert ended.outputs == {"opening": "The EV7 is quiet.", "ending": "Buy one."}
    assert [u.step for u in ended.usage] == ["generate.opening", "generate.ending"]
    first, second = openai_server.requests
    assert first.body["messages"] == [{"role": "user", "content": "Open a post on Aurora EV7. Fact: range 600 km"}]
    assert first.body["max_tokens"] == 120  # the chain step's own limit
    assert second.body["messages"] == [{"role": "user", "content": "End the post that opens: The EV7 is quiet."}]
    assert second.body["max_tokens"] == 300
    assert "response_format" not in first.body and "response_format" not in second.body


async def test_exhausted_fallbacks_raise_the_typed_error(
    openai_server: OpenAITestServer, pool: ModelPool, templates: Path
) -> None:
    openai_server.script("gpt-4o", Fail(502))
    openai_server.script("gpt-4o-mini", Fail(503))
    with pytest.raises(ModelServerError) as caught:
        await generator(pool, templates).handle(push_job())
    assert caught.value.code == "model_server_error" and caught.value.details["model"] == "gpt-4o-mini"


async def test_a_step_that_is_not_generate_is_refused(pool: ModelPool, templates: Path) -> None:
    job = push_job().model_copy(update={"slip": ("format",)})
    with pytest.raises(AgentError) as caught:
        await generator(pool, templates).handle(job)
    assert caught.value.code == "unknown_step"


# --- the provider is paid once per job (issue 10) ----------------------------


def journalled_generator(pool: ModelPool, templates: Path, journal: SqliteJournal) -> GeneratorAgent:
    return GeneratorAgent(
        pool.config, pool, PromptLibrary(pool.config, templates), schema_for=lambda _: SCHEMA, journal=journal
    )


async def test_a_redelivered_job_reemits_its_recorded_completion_without_calling_the_model(
    openai_server: OpenAITestServer, pool: ModelPool, templates: Path, tmp_path: Path
) -> None:
    openai_server.script("gpt-4o", Reply('{"title": "Sale!"}', input_tokens=50, output_tokens=7))
    job = push_job()
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    first = await journalled_generator(pool, templates, journal).handle(job)
    # A restarted worker: a new agent and a new handle on the same journal file.
    restarted = SqliteJournal(tmp_path / "journal.sqlite3")
    again = await journalled_generator(pool, templates, restarted).handle(job)
    assert openai_server.attempts("gpt-4o") == 1
    # Ids are given by the runtime at publish (derived from the job's): everything else is the same.
    assert [e.model_copy(update={"id": ""}) for e in again] == [e.model_copy(update={"id": ""}) for e in first]
    await journal.close()
    await restarted.close()


async def test_a_formatter_reask_is_a_new_job_and_a_new_call(
    openai_server: OpenAITestServer, pool: ModelPool, templates: Path, tmp_path: Path
) -> None:
    """The formatter's re-ask reaches the generator under its own derived id, as the runtime publishes it."""
    openai_server.script("gpt-4o", Reply("not json"), Reply('{"title": "Sale!"}'))
    journal = SqliteJournal(tmp_path / "journal.sqlite3")
    agent = journalled_generator(pool, templates, journal)
    job = push_job()
    forwarded, _ = await agent.handle(job)
    reask = forwarded.model_copy(update={"id": derived_id(forwarded.id, "formatter/0"), "slip": ("generate", "format")})
    answered, _ = await agent.handle(reask)
    assert openai_server.attempts("gpt-4o") == 2
    assert isinstance(answered, Job) and answered.outputs["generate"] == '{"title": "Sale!"}'
    await journal.close()


async def test_a_failed_journal_write_is_retried_without_paying_again(
    openai_server: OpenAITestServer, pool: ModelPool, templates: Path, tmp_path: Path
) -> None:
    import sqlite3

    openai_server.script("gpt-4o", Reply('{"title": "Sale!"}'))
    path = tmp_path / "journal.sqlite3"
    journal = SqliteJournal(path)
    await journal.get("warm")  # creates the file
    journal._file._busy_timeout_s = 0.05
    agent = journalled_generator(pool, templates, journal)
    blocker = sqlite3.connect(path)
    blocker.execute("BEGIN EXCLUSIVE")
    job = push_job()
    with pytest.raises(RetryableError):
        await agent.handle(job)
    blocker.rollback()
    blocker.close()
    forwarded, _ = await agent.handle(job)
    assert openai_server.attempts("gpt-4o") == 1
    assert isinstance(forwarded, Job) and forwarded.outputs["generate"] == '{"title": "Sale!"}'
    assert await journal.get(f"{forwarded.id}/generate") is not None
    await journal.close()
