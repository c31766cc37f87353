"""examples/custom_agent.py: the sentiment tagger on product_review's slip, embedded and as a Kafka worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.custom_agent import SentimentTagger, review, sentiment_of
from relaychain import Client, Job, Request, Response, load_settings
from relaychain.testing import AgentHarness
from tests.examples.conftest import KafkaWorkers
from tests.support.instant_model import instant_model
from tests.support.openai_server import OpenAITestServer


def _hints(server: OpenAITestServer) -> list[str]:
    return [
        m["content"]
        for r in server.requests
        if r.model == instant_model("product_review")
        for m in r.body["messages"]
        if m["role"] == "system" and "customer sounds" in m["content"]
    ]


def test_the_tagger_scores_words() -> None:
    assert sentiment_of("The lid broke, very disappointed") == "negative"
    assert sentiment_of("Great kettle, boils fast") == "positive"
    assert sentiment_of("It is a kettle") == "neutral"


async def test_the_tagger_under_the_harness_adds_its_hint_and_advances() -> None:
    request = Request(business="product_review", input="Broken after a week", vars={"product": "kettle", "rating": 1})
    prompt = (
        {"role": "system", "content": "You are a copywriter."},
        {"role": "user", "content": "Reply to the review."},
    )
    job = request.reply(Job, request=request, model="m", prompt=prompt, slip=("sentiment", "generate", "format"))
    async with AgentHarness(SentimentTagger()) as harness:
        [tagged] = await harness.publish(job)
    assert isinstance(tagged, Job) and tagged.slip == ("generate", "format")
    assert [m.role for m in tagged.prompt] == ["system", "system", "user"]
    assert "negative" in tagged.prompt[1].content
    assert tagged.results[-1].step == "sentiment" and tagged.results[-1].agent == "sentiment"


async def test_embedded_the_tagger_runs_on_the_slip_and_steers_the_model(
    instant_config: Path, instant_server: OpenAITestServer, tmp_path: Path
) -> None:
    settings = load_settings(instant_config, data_dir=tmp_path, observability={"exporters": ["none"]})
    before = len(_hints(instant_server))
    answer = await review(settings, "The lid broke after a week, very disappointed")
    assert isinstance(answer, Response), answer
    assert answer.output["reply"]
    hints = _hints(instant_server)[before:]
    assert hints == ['The customer sounds negative; set "sentiment" to "negative".']


@pytest.mark.kafka
@pytest.mark.timeout(180)
async def test_as_a_worker_on_kafka_the_tagger_serves_its_step(
    kafka_workers: KafkaWorkers, instant_server: OpenAITestServer, tmp_path: Path
) -> None:
    """`relaychain worker examples.custom_agent:SentimentTagger --inbox relaychain.sentiment` beside the built-ins."""
    settings = load_settings(kafka_workers.config, bus=f"kafka://{kafka_workers.bootstrap}", data_dir=tmp_path)
    before = len(_hints(instant_server))
    async with Client.connect(settings, timeout=60) as client:
        seen = [
            item
            async for item in client.stream(
                business="product_review", input="Great kettle, boils fast", vars={"product": "kettle", "rating": 5}
            )
        ]
    answer = seen[-1]
    assert isinstance(answer, Response), answer
    steps = [(p.step, p.agent) for p in seen[:-1]]
    assert ("sentiment", "sentiment") in steps and ("route", "router") in steps, steps
    assert steps.index(("sentiment", "sentiment")) < steps.index(("budget", "tokenizer")), steps
    assert _hints(instant_server)[before:] == ['The customer sounds positive; set "sentiment" to "positive".']
