"""The moderator agent on hand-built jobs: block, mask, flag, outcomes, span counts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relaychain.agents.moderation import WordLists
from relaychain.agents.moderator import ModeratorAgent
from relaychain.schemas import Blocked, ChatMessage, Job, ModerationOutcome, Request
from relaychain.schemas.config import AppConfig

WORDS = "sex\tadult\nbomb\tviolence\n加微信\tads\nbuy followers\tads\n翻墙\tpolitics\nbest ever\tad_law\n"


def _config(tmp_path: Path) -> AppConfig:
    (tmp_path / "global.txt").write_text(WORDS, encoding="utf-8")
    model = {
        "provider": "openai",
        "tokenizer": "tiktoken:cl100k_base",
        "context_window": 100,
        "max_output_tokens": 10,
        "price": {"input_per_million": "0", "output_per_million": "0"},
    }
    business = {
        "default_model": "m",
        "allowed_models": ["m"],
        "templates": {"default": "t.j2"},
        "output_schema": "s",
        "steps": ["moderate.input", "generate", "moderate.output", "format"],
    }
    return AppConfig.model_validate(
        {
            "models": {"m": model},
            "output_schemas": {"s": "s.json"},
            "moderation": {
                "lists": ["global.txt"],
                "actions": {"adult": "block", "violence": "block", "ads": "mask", "politics": "flag"},
            },
            "businesses": {
                "push": business,
                "strict": {**business, "moderation": {"actions": {"ads": "block"}, "default_action": "flag"}},
            },
        }
    )


@pytest.fixture
def agent(tmp_path: Path) -> ModeratorAgent:
    config = _config(tmp_path)
    return ModeratorAgent(config, WordLists(config, tmp_path))


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _job(
    text: str, *, business: str = "push", step: str = "moderate.input", campaign: str = "spring sale", **fields: object
) -> Job:
    request = Request(business=business, input=text, vars={"campaign": campaign, "count": 3})
    prompt = (ChatMessage(role="system", content="be nice"), ChatMessage(role="user", content=f"Write about: {text}"))
    slip = ("moderate.input", "generate", "moderate.output", "format")
    slip = slip[slip.index(step) :]
    return Job(request=request, business=business, model="m", prompt=prompt, slip=slip, **fields)


async def test_block_answers_blocked_naming_categories_not_words(agent: ModeratorAgent) -> None:
    [answer] = await agent.handle(_job("Looking for s.e.x and a bomb"))
    assert isinstance(answer, Blocked)
    assert (answer.stage, answer.categories) == ("input", ("adult", "violence"))
    dumped = answer.model_dump_json()
    assert "sex" not in dumped and "bomb" not in dumped


async def test_mask_forwards_masked_input_and_prompt(agent: ModeratorAgent) -> None:
    job = _job("快加微信 and buy   followers now", campaign="加 微 信")
    [forwarded] = await agent.handle(job)
    assert isinstance(forwarded, Job)
    assert forwarded.slip == ("generate", "moderate.output", "format")
    assert forwarded.request.input == "快*** and " + "*" * len("buy   followers") + " now"
    assert forwarded.request.vars == {"campaign": "*****", "count": 3}
    assert forwarded.prompt[1].content == f"Write about: {forwarded.request.input}"
    assert forwarded.prompt[0] == job.prompt[0]
    assert len(forwarded.request.input) == len(job.request.input)
    assert forwarded.moderation == (ModerationOutcome(stage="input", action="mask", counts={"ads": 3}),)


async def test_mask_replaces_the_original_characters_of_an_evasion(agent: ModeratorAgent) -> None:
    """Traditional characters, symbols, look-alike letters and invisibles are masked where they stand."""
    text = "快加✨微✨信, bυy fοllο\u200bwers!"
    [forwarded] = await agent.handle(_job(text))
    assert isinstance(forwarded, Job)
    assert forwarded.request.input == "快*****, " + "*" * len("bυy fοllο\u200bwers") + "!"
    assert len(forwarded.request.input) == len(text)
    [blocked] = await agent.handle(_job("clean", step="moderate.output", outputs={"main": "翻牆 and a bоmb"}))
    assert isinstance(blocked, Blocked) and blocked.categories == ("violence",)


async def test_flag_passes_untouched_and_records(agent: ModeratorAgent) -> None:
    job = _job("如何翻墙")
    [forwarded] = await agent.handle(job)
    assert isinstance(forwarded, Job)
    assert forwarded.request == job.request and forwarded.prompt == job.prompt
    assert forwarded.moderation == (ModerationOutcome(stage="input", action="flag", counts={"politics": 1}),)


async def test_clean_input_passes(agent: ModeratorAgent) -> None:
    [forwarded] = await agent.handle(_job("Sussex spring sale"))
    assert forwarded.moderation == (ModerationOutcome(stage="input", action="pass", counts={}),)


async def test_business_actions_override_global_and_default_action_applies(agent: ModeratorAgent) -> None:
    [answer] = await agent.handle(_job("加微信", business="strict"))
    assert isinstance(answer, Blocked) and answer.categories == ("ads",)
    [forwarded] = await agent.handle(_job("the best ever deal", business="strict"))
    assert forwarded.moderation[-1].action == "flag", "ad_law has no action anywhere: the business default (flag)"
    [blocked] = await agent.handle(_job("the best ever deal", business="push"))
    assert isinstance(blocked, Blocked), "push's default action is block"


async def test_output_mask_rewrites_every_step_output(agent: ModeratorAgent) -> None:
    job = _job("clean", step="moderate.output", outputs={"opening": "加微信 today", "ending": "no ads"})
    [forwarded] = await agent.handle(job)
    assert forwarded.outputs == {"opening": "*** today", "ending": "no ads"}
    assert forwarded.moderation[-1] == ModerationOutcome(stage="output", action="mask", counts={"ads": 1})


async def test_output_after_a_reask_checks_only_the_new_answer(agent: ModeratorAgent) -> None:
    job = _job("clean", step="moderate.output", outputs={"main": "翻墙 old", "generate": '{"a": "fine"}'}, reasks=1)
    [forwarded] = await agent.handle(job)
    assert forwarded.moderation[-1].counts == {}


async def test_output_block(agent: ModeratorAgent) -> None:
    [answer] = await agent.handle(_job("clean", step="moderate.output", outputs={"main": '{"body": "ＳＥＸ"}'}))
    assert isinstance(answer, Blocked) and answer.stage == "output"


async def test_counts_go_on_the_span_without_words(agent: ModeratorAgent, spans) -> None:
    provider, exporter = spans
    with provider.get_tracer("test").start_as_current_span("moderator moderate.input"):
        await agent.handle(_job("加微信, 加 微 信 and 翻墙"))
    [span] = exporter.get_finished_spans()
    attributes = dict(span.attributes)
    assert attributes["relaychain.moderation.ads"] == 2
    assert attributes["relaychain.moderation.politics"] == 1
    assert attributes["relaychain.moderation.action"] == "mask"
    assert not any("微信" in str(v) or "翻墙" in str(v) for v in attributes.values())
