"""The formatter agent: valid, repaired, re-asked, errored; the Response; the car blog assembled."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from relaychain.agents.formatter import REASK_INSTRUCTION, FormatterAgent
from relaychain.agents.formatting import SchemaRegistry
from relaychain.bus.errors import AgentError
from relaychain.schemas import (
    ChatMessage,
    Job,
    ModerationOutcome,
    Money,
    Request,
    Response,
    RetrievedChunk,
    StepUsage,
)
from relaychain.settings import load_settings

DEFAULTS = Path(__file__).resolve().parents[2] / "relaychain" / "defaults"


@pytest.fixture(scope="module")
def agent() -> FormatterAgent:
    settings = load_settings(DEFAULTS / "config.yaml")
    return FormatterAgent(settings.app, SchemaRegistry(settings.app, settings.config_dir))


PROMPT = (ChatMessage(role="system", content="sys"), ChatMessage(role="user", content="Write a push"))


def _job(output: str, *, business: str = "ops_push", rest: tuple[str, ...] = (), **fields: object) -> Job:
    fields.setdefault("outputs", {"main": output})
    return Job(
        request=Request(business=business, input="spring sale", vars={"campaign": "spring", "audience": "all"}),
        business=business,
        model="gpt-4o",
        prompt=PROMPT,
        slip=("format", *rest),
        **fields,
    )


USAGE = (
    StepUsage(
        step="generate",
        model="gpt-4o-mini",
        input_tokens=50,
        output_tokens=20,
        input_cost=Decimal("0.0001"),
        output_cost=Decimal("0.0002"),
        currency="USD",
    ),
    StepUsage(
        step="memory.summary",
        model="ernie-3.5-8k",
        input_tokens=10,
        output_tokens=5,
        input_cost=Decimal("0.01"),
        output_cost=Decimal("0.02"),
        currency="CNY",
    ),
)


@pytest.mark.parametrize(
    "output",
    [
        '{"title": "Spring sale", "body": "20% off today"}',
        'Here it is:\n```json\n{"title": "Spring sale", "body": "20% off today"}\n```\nAnything else?',
        "{'title': 'Spring sale', 'body': '20% off today'}",
    ],
)
async def test_valid_and_repairable_outputs_answer(agent: FormatterAgent, output: str) -> None:
    [response] = await agent.handle(_job(output))
    assert isinstance(response, Response)
    assert response.output == {"title": "Spring sale", "body": "20% off today"}


async def test_response_fields(agent: FormatterAgent) -> None:
    outcome = ModerationOutcome(stage="input", action="pass")
    job = _job('{"title": "T", "body": "B"}', usage=USAGE, moderation=(outcome,), rest=("respond",))
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("formatter format") as span:
        [response] = await agent.handle(job)
    assert isinstance(response, Response)
    assert (response.request_id, response.business) == (job.request_id, "ops_push")
    assert response.model == "gpt-4o-mini", "the model the last generate call actually used"
    assert response.usage == USAGE
    assert response.cost == (
        Money(amount=Decimal("0.03"), currency="CNY"),
        Money(amount=Decimal("0.0003"), currency="USD"),
    )
    assert response.moderation == (outcome,)
    assert response.trace_id == format(span.get_span_context().trace_id, "032x")


async def test_memory_save_after_format_gets_the_job_too(agent: FormatterAgent) -> None:
    events = await agent.handle(_job('{"title": "T", "body": "B"}', rest=("memory.save", "respond")))
    response, forwarded = events
    assert isinstance(response, Response) and isinstance(forwarded, Job)
    assert forwarded.slip == ("memory.save",)
    assert forwarded.result == {"title": "T", "body": "B"}


@pytest.mark.parametrize(
    ("output", "error"),
    [
        (
            '{"title": "A title that is far longer than thirty characters", "body": "B"}',
            "$.title: at most 30 characters (got 49)",
        ),
        ('{"title": "T", "body": 42}', "$.body: expected string, got integer"),
        ('{"title": "T", "body": "cut o', "cut off"),
        ("Sorry, I can't.", "no JSON object"),
    ],
)
async def test_invalid_output_is_reasked_with_the_errors(agent: FormatterAgent, output: str, error: str) -> None:
    [reask] = await agent.handle(_job(output, rest=("memory.save",)))
    assert isinstance(reask, Job)
    assert reask.slip == ("generate", "moderate.output", "format", "memory.save")
    assert reask.reasks == 1
    assert reask.prompt[:2] == PROMPT
    assert reask.prompt[2] == ChatMessage(role="assistant", content=output)
    assert reask.prompt[3].role == "user"
    assert error in reask.prompt[3].content and REASK_INSTRUCTION in reask.prompt[3].content


async def test_output_at_the_token_limit_is_truncated_not_repaired(agent: FormatterAgent) -> None:
    """The generator records why the model stopped; the formatter does not guess it from token counts."""
    usage = (
        StepUsage(step="generate", model="smollm2-135m", input_tokens=5, output_tokens=256, finish_reason="length"),
    )
    [reask] = await agent.handle(_job('{"title": "T", "body": "B"}', usage=usage))
    assert isinstance(reask, Job) and "length limit" in reask.prompt[-1].content


async def test_after_a_fallback_a_full_allowance_that_stopped_is_not_truncation(agent: FormatterAgent) -> None:
    """The answering model's token count at the requested model's limit, but the model said `stop`."""
    usage = (StepUsage(step="generate", model="smollm2-135m", input_tokens=5, output_tokens=256, finish_reason="stop"),)
    [answer] = await agent.handle(_job('{"title": "T", "body": "B"}', usage=usage))
    assert not isinstance(answer, Job), answer


async def test_after_the_limit_output_invalid(agent: FormatterAgent) -> None:
    with pytest.raises(AgentError) as caught:
        await agent.handle(_job('{"title": "T", "body": 42}', reasks=2))
    assert caught.value.code == "output_invalid"
    assert caught.value.details["errors"] == ["$.body: expected string, got integer"]


async def test_reasked_answer_is_read_from_the_newest_output(agent: FormatterAgent) -> None:
    outputs = {"main": '{"title": "T", "body": 42}', "generate": '```json\n{"title": "T", "body": "fixed"}\n```'}
    [response] = await agent.handle(_job("", outputs=outputs, reasks=1))
    assert isinstance(response, Response) and response.output == {"title": "T", "body": "fixed"}


def _car_job(**fields: object) -> Job:
    context = (
        RetrievedChunk(text="Range 700 km", source="/data/cars/byd_seal.pdf", location="p1", score=0.9),
        RetrievedChunk(text="Battery 82.5 kWh", source="/data/cars/byd_seal.pdf", location="p2", score=0.8),
        RetrievedChunk(text="Price", source="/data/cars/byd_seal_prices.md", score=0.5),
    )
    return Job(
        request=Request(business="car_blog", input="a city commuter's take", vars={"car": "BYD Seal"}),
        business="car_blog",
        model="smollm2-135m",
        context=context,
        slip=("format",),
        **fields,
    )


async def test_car_blog_is_assembled_from_the_chain(agent: FormatterAgent) -> None:
    outputs = {
        "opening": "# The BYD Seal in the city\n\nThe Seal glides through traffic.",
        "middle": "Middle: With 700 km of range and an 82.5 kWh battery, charging is rare.",
        "ending": '"Buy it if you commute."',
    }
    [response] = await agent.handle(_car_job(outputs=outputs))
    assert isinstance(response, Response)
    assert response.output == {
        "title": "The BYD Seal in the city",
        "opening": "The Seal glides through traffic.",
        "middle": "With 700 km of range and an 82.5 kWh battery, charging is rare.",
        "ending": "Buy it if you commute.",
        "specs_cited": ["byd_seal.pdf", "byd_seal_prices.md"],
    }


async def test_car_blog_title_falls_back_to_the_first_sentence(agent: FormatterAgent) -> None:
    outputs = {"opening": "Meet the BYD Seal, a quiet saloon. It is fast.", "middle": "m", "ending": "e"}
    [response] = await agent.handle(_car_job(outputs=outputs))
    assert response.output["title"] == "Meet the BYD Seal, a quiet saloon"
    assert response.output["opening"] == outputs["opening"]


async def test_car_blog_invalid_assembly_is_reasked_with_the_schema(agent: FormatterAgent) -> None:
    outputs = {"opening": "o", "middle": "m" * 2000, "ending": "e"}
    [reask] = await agent.handle(_car_job(outputs=outputs))
    assert isinstance(reask, Job)
    assert reask.slip == ("generate", "moderate.output", "format")
    first, bad, fix = reask.prompt
    assert "JSON Schema" in first.content and '"specs_cited"' in first.content
    assert bad.role == "assistant" and '"middle"' in bad.content
    assert "$.middle: at most 1400 characters (got 2000)" in fix.content
