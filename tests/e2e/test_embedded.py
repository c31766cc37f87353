"""The main job end to end on the embedded defaults: memory bus, SmolLM2, MiniLM, SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaychain.embedded import EmbeddedApp
from relaychain.observability import read_spans
from relaychain.schemas import Blocked, Request, Response
from relaychain.settings import load_settings
from relaychain.trace_view import spans_of_request

pytestmark = pytest.mark.slow


@pytest.mark.timeout(900)
async def test_car_blog_chain_and_a_blocked_request(smollm2_data_dir: Path, tmp_path: Path) -> None:
    traces = tmp_path / "traces.jsonl"
    settings = load_settings(
        data_dir=smollm2_data_dir, observability={"exporters": ["jsonl"], "jsonl_path": str(traces)}
    )
    car_blog = Request(
        business="car_blog",
        input="A family of four wants a long-range electric SUV for weekend trips",
        vars={"car": "Halvorsen Nordkap E7"},
    )
    dirty = Request(
        business="ops_push", input="click this bomb deal now", vars={"campaign": "Double 11", "audience": "everyone"}
    )
    async with EmbeddedApp(settings, raise_errors=True) as app:
        answer = await app.ask(car_blog, timeout=900)
        blocked = await app.ask(dirty, timeout=60)

    assert isinstance(answer, Response), answer
    blog = answer.output
    assert all(blog[part].strip() for part in ("title", "opening", "middle", "ending"))
    assert any("halvorsen" in source.lower() for source in blog["specs_cited"]), blog["specs_cited"]
    assert [u.step for u in answer.usage] == ["generate.opening", "generate.middle", "generate.ending"]
    # The later steps start with the opening's system prompt, brief and sheet: llama.cpp read those from its cache.
    assert all(u.cached_input_tokens > 0 for u in answer.usage[1:]), answer.usage
    assert answer.model == "smollm2-135m" and answer.trace_id

    spans = spans_of_request(read_spans(traces), car_blog.request_id)
    names = [s["name"] for s in spans]
    for step in (
        "router request",
        "retriever retrieve",
        "generator generate.opening",
        "generator generate.middle",
        "generator generate.ending",
        "formatter format",
    ):
        assert step in names, names
    assert len({s["trace_id"] for s in spans}) == 1
    generate = next(s for s in spans if s["name"] == "generator generate.middle")
    assert generate["attributes"]["gen_ai.request.model"] == "smollm2-135m"
    assert generate["attributes"]["gen_ai.usage.output_tokens"] > 0

    assert isinstance(blocked, Blocked) and blocked.stage == "input" and blocked.categories == ("violence",)
    assert "bomb" not in blocked.model_dump_json()
    blocked_spans = [s["name"] for s in spans_of_request(read_spans(traces), dirty.request_id)]
    assert "moderator moderate.input" in blocked_spans
    assert not any(name.startswith("generator") for name in blocked_spans), blocked_spans


VARS = {
    "campaign": "Double 11",
    "audience": "new users",
    "user_name": "Li Lei",
    "interests": "hiking",
    "region": "Chengdu",
    "product": "electric kettle",
    "rating": "4",
    "headline": "City opens a new metro line",
}
INPUTS = {
    "ops_push": "20% off all kettles this weekend",
    "personalized_push": "New trail shoes are in stock",
    "weibo_regional": "The hotpot festival starts on Saturday",
    "product_review": "Boils fast but the lid is a bit loose",
    "news_comment": "The new line links the airport to the city centre in 25 minutes",
}


@pytest.mark.timeout(900)
async def test_every_single_step_business_answers_schema_valid_json_on_smollm2(
    smollm2_data_dir: Path, tmp_path: Path
) -> None:
    """Constrained decoding: SmolLM2 (135M parameters) produces each business's JSON, validated by the formatter."""
    from relaychain.agents.formatting.validate import SchemaRegistry

    settings = load_settings(data_dir=smollm2_data_dir, observability={"exporters": ["none"]})
    schemas = SchemaRegistry(settings.app, settings.config_dir)
    async with EmbeddedApp(
        settings, agents=("router", "moderator", "memory", "tokenizer", "generator", "formatter")
    ) as app:
        for business, text in INPUTS.items():
            answer = await app.ask(
                Request(business=business, input=text, vars=VARS, conversation_id=f"c-{business}"), timeout=600
            )
            assert isinstance(answer, Response), (business, answer)
            schema = schemas[settings.app.businesses[business].output_schema]
            assert schema.validate(answer.output) == answer.output
            assert answer.usage and answer.usage[0].output_tokens > 0
