"""The tokenizer/cost agent: fits jobs to the context window, books usage in the ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relaychain.agents.stores.ledger import SqliteLedger
from relaychain.agents.tokenizer import TokenizerAgent
from relaychain.agents.tokens import TiktokenCounter, load_encoding
from relaychain.bus.errors import AgentError
from relaychain.schemas import (
    ChatMessage,
    Job,
    Request,
    RequestOptions,
    RetrievedChunk,
    StepRecord,
    StepUsage,
    Usage,
)
from relaychain.schemas.config import AppConfig

CONFIG = AppConfig.model_validate(
    {
        "models": {
            "small-gpt": {
                "provider": "openai",
                "tokenizer": "tiktoken:cl100k_base",
                "context_window": 160,
                "max_output_tokens": 40,
                "price": {"input_per_million": "0.50", "output_per_million": "1.50", "currency": "USD"},
            },
        },
        "businesses": {
            "chat": {
                "default_model": "small-gpt",
                "allowed_models": ["small-gpt"],
                "templates": {"default": "chat.j2"},
                "output_schema": "text",
                "steps": ["memory.load", "budget", "generate", "format"],
            },
        },
        "output_schemas": {"text": "schemas/text.json"},
    }
)
COUNTER = TiktokenCounter(load_encoding("cl100k_base"))
SYSTEM = ChatMessage(role="system", content="Answer in one line.")


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def assistant(text: str) -> ChatMessage:
    return ChatMessage(role="assistant", content=text)


HISTORY = (
    user("tell me about " + "old " * 30),
    assistant("it was " + "long ago " * 10),
    user("and then?"),
    assistant("then it ended."),
)


def job(
    *,
    prompt: tuple[ChatMessage, ...] = (SYSTEM, user("what next?")),
    history: tuple[ChatMessage, ...] = HISTORY,
    max_tokens: int | None = None,
    context: tuple[RetrievedChunk, ...] = (),
) -> Job:
    request = Request(business="chat", input="what next?", options=RequestOptions(max_tokens=max_tokens))
    return request.reply(
        Job,
        request=request,
        model="small-gpt",
        prompt=prompt,
        history=history,
        context=context,
        slip=("budget", "generate", "format"),
        results=(StepRecord(step="memory.load", agent="memory"),),
    )


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SqliteLedger]:
    store = SqliteLedger(tmp_path / "ledger.sqlite3")
    yield store
    await store.close()


@pytest.fixture
def agent(ledger: SqliteLedger) -> TokenizerAgent:
    return TokenizerAgent(CONFIG, ledger)


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


async def handled_in_span(agent: TokenizerAgent, event: Job | Usage, spans) -> tuple[list, ReadableSpan]:
    provider, exporter = spans
    with provider.get_tracer("test").start_as_current_span("tokenizer budget"):
        out = list(await agent.handle(event))
    [span] = exporter.get_finished_spans()
    return out, span


async def test_a_job_that_fits_is_forwarded_whole(agent: TokenizerAgent, spans) -> None:
    original = job()
    [forwarded], span = await handled_in_span(agent, original, spans)
    assert isinstance(forwarded, Job)
    assert forwarded.history == HISTORY
    assert forwarded.slip == ("generate", "format")
    assert forwarded.results[-1] == StepRecord(step="budget", agent="tokenizer")
    expected = COUNTER.count_messages((SYSTEM, *HISTORY, user("what next?")))
    assert expected <= 160 - 40
    assert span.attributes["relaychain.tokens.input"] == expected
    assert span.attributes["relaychain.tokens.budget"] == 120
    assert span.attributes["relaychain.history.dropped"] == 0


async def test_old_turns_are_dropped_to_leave_room_for_the_answer(agent: TokenizerAgent, spans) -> None:
    # Asking for 100 output tokens leaves 60 for input: the long first turn no longer fits.
    [forwarded], span = await handled_in_span(agent, job(max_tokens=100), spans)
    assert forwarded.history == HISTORY[2:]
    tokens = span.attributes["relaychain.tokens.input"]
    assert tokens == COUNTER.count_messages((SYSTEM, *HISTORY[2:], user("what next?")))
    assert tokens <= 60
    assert span.attributes["relaychain.history.dropped"] == 2


async def test_retrieved_context_takes_room_from_history(agent: TokenizerAgent) -> None:
    chunk = RetrievedChunk(text="spec sheet " * 20, source="car.pdf", score=0.9)
    [whole] = await agent.handle(job())
    [forwarded] = await agent.handle(job(context=(chunk,)))
    assert whole.history == HISTORY
    assert forwarded.history == HISTORY[2:]


async def test_a_prompt_too_long_for_the_window_is_refused(agent: TokenizerAgent) -> None:
    with pytest.raises(AgentError) as raised:
        await agent.handle(job(prompt=(SYSTEM, user("word " * 200))))
    assert raised.value.code == "input_too_long"
    assert raised.value.details["budget"] == 120
    assert raised.value.details["prompt_tokens"] > 200


async def test_max_tokens_that_leave_no_room_is_input_too_long(agent: TokenizerAgent) -> None:
    with pytest.raises(AgentError) as raised:
        await agent.handle(job(max_tokens=160))
    assert raised.value.code == "input_too_long"


async def test_a_chain_job_without_prompt_counts_the_request_text(agent: TokenizerAgent, spans) -> None:
    [forwarded], span = await handled_in_span(agent, job(prompt=(), history=()), spans)
    assert span.attributes["relaychain.tokens.input"] == COUNTER.count_messages((user("what next?"),))
    assert forwarded.history == ()


async def test_big_inputs_are_counted_the_same_off_the_loop(ledger: SqliteLedger, spans) -> None:
    roomy = CONFIG.model_copy(
        update={"models": {"small-gpt": CONFIG.models["small-gpt"].model_copy(update={"context_window": 100_000})}}
    )
    big = user("lorem ipsum " * 2_000)
    [forwarded], span = await handled_in_span(TokenizerAgent(roomy, ledger), job(prompt=(SYSTEM, big)), spans)
    assert span.attributes["relaychain.tokens.input"] == COUNTER.count_messages((SYSTEM, *HISTORY, big))
    assert forwarded.history == HISTORY


async def test_counters_can_be_injected(ledger: SqliteLedger) -> None:
    asked: list[str] = []

    def counters(model: str) -> TiktokenCounter:
        asked.append(model)
        return COUNTER

    await TokenizerAgent(CONFIG, ledger, counters).handle(job())
    assert asked == ["small-gpt"]


async def test_usage_is_booked_once_and_nothing_is_emitted(agent: TokenizerAgent, ledger: SqliteLedger) -> None:
    step = StepUsage(
        step="generate",
        model="small-gpt",
        input_tokens=70,
        output_tokens=30,
        input_cost=Decimal("0.000035"),
        output_cost=Decimal("0.000045"),
    )
    event = job().reply(Usage, usage=step)
    assert await agent.handle(event) == []
    assert await agent.handle(event) == []
    [row] = await ledger.totals()
    assert (row.business, row.model, row.calls, row.input_tokens, row.output_tokens) == ("chat", "small-gpt", 1, 70, 30)
    assert (row.input_cost, row.output_cost, row.currency) == (Decimal("0.000035"), Decimal("0.000045"), "USD")


async def test_other_events_and_steps_are_refused(agent: TokenizerAgent) -> None:
    with pytest.raises(AgentError) as raised:
        await agent.handle(job().advance("tokenizer"))
    assert raised.value.code == "unexpected_event"
    with pytest.raises(AgentError):
        await agent.handle(Request(business="chat", input="hi"))


async def test_a_model_without_a_usable_tokenizer_is_a_typed_error(ledger: SqliteLedger) -> None:
    def not_shipped(model: str) -> TiktokenCounter:
        return TiktokenCounter(load_encoding("p50k_base"))

    with pytest.raises(AgentError) as raised:
        await TokenizerAgent(CONFIG, ledger, not_shipped).handle(job())
    assert raised.value.code == "tokenizer_unavailable"


# --- usage is a side channel and never lost (issue 10) -----------------------


def usage_event(tokens: int) -> Usage:
    step = StepUsage(
        step="generate",
        model="small-gpt",
        input_tokens=tokens,
        output_tokens=1,
        input_cost=Decimal("0.01"),
        output_cost=Decimal("0"),
    )
    return job().reply(Usage, usage=step)


async def test_a_locked_ledger_is_retryable_and_its_usage_is_spooled_then_replayed(tmp_path: Path) -> None:
    import sqlite3

    from relaychain.agents.stores.unbilled import UnbilledSpool
    from relaychain.bus.errors import RetryableError

    path = tmp_path / "ledger.sqlite3"
    costs = SqliteLedger(path)
    await costs.totals()
    costs._file._busy_timeout_s = 0.05
    spool = UnbilledSpool(tmp_path / "unbilled.jsonl")
    agent = TokenizerAgent(CONFIG, costs, unbilled=spool)
    locked, later = usage_event(10), usage_event(20)
    blocker = sqlite3.connect(path)
    blocker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(RetryableError) as raised:
        await agent.handle(locked)
    assert raised.value.code == "ledger_unavailable"
    assert spool.count() == 1, "the event is on disk before the failure goes back to the runtime"
    blocker.rollback()
    blocker.close()

    # The runtime's retry of the same event, then the next event: each recorded once, the spool drained.
    assert await agent.handle(locked) == []
    assert await agent.handle(later) == []
    assert spool.count() == 0 and not spool.pending
    [row] = await costs.totals()
    assert (row.calls, row.input_tokens) == (2, 30)
    await costs.close()


async def test_warm_up_loads_the_counters_of_the_models_businesses_use(ledger: SqliteLedger) -> None:
    asked: list[str] = []

    def counters(model: str) -> TiktokenCounter:
        asked.append(model)
        return COUNTER

    agent = TokenizerAgent(CONFIG, ledger, counters)
    await agent.warm_up()
    await agent.handle(job())
    assert asked == ["small-gpt"]
