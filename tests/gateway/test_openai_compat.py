"""`/v1/chat/completions` through the real `openai` SDK against the running gateway."""

from __future__ import annotations

import json
from decimal import Decimal

import openai
import pytest

from tests.gateway.conftest import RunningGateway
from tests.support.instant_model import INSTANT_REPLIES, instant_model

VARS = {"product": "Trail boots", "rating": "4"}
MESSAGES = [{"role": "user", "content": "The soles wore out after a month."}]


def sdk(gateway: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


async def test_completion_has_the_validated_output_usage_and_cost(gateway: RunningGateway) -> None:
    async with sdk(gateway) as client:
        completion = await client.chat.completions.create(
            model="product_review", messages=MESSAGES, extra_body={"vars": VARS}
        )

    assert json.loads(completion.choices[0].message.content or "") == json.loads(INSTANT_REPLIES["product_review"])
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == instant_model("product_review")
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (40, 20)
    extension = completion.model_extra["relaychain"]
    assert extension["answer_type"] == "response"
    # 40 input tokens at 0.50/M plus 20 output tokens at 1.50/M.
    assert [(Decimal(c["amount"]), c["currency"]) for c in extension["cost"]] == [(Decimal("0.00005"), "USD")]
    (call,) = [r for r in gateway.model_server.requests if r.model == instant_model("product_review")]
    assert "The soles wore out after a month." in json.dumps(call.body["messages"])


async def test_streamed_chunks_join_into_the_generation(gateway: RunningGateway) -> None:
    async with sdk(gateway) as client:
        stream = await client.chat.completions.create(
            model=f"product_review:{instant_model('product_review')}",
            messages=MESSAGES,
            extra_body={"vars": VARS},
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text) == json.loads(INSTANT_REPLIES["product_review"])
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) >= 1
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usage = chunks[-1].usage
    assert usage is not None and usage.total_tokens == 60
    # The model was asked to stream: the deltas are the generator's, not a re-chunked answer.
    (call,) = [r for r in gateway.model_server.requests if r.model == instant_model("product_review")]
    assert call.stream


async def test_unknown_business_is_a_404_with_a_json_body(gateway: RunningGateway) -> None:
    async with sdk(gateway) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await client.chat.completions.create(model="no_such_business", messages=MESSAGES)
    assert caught.value.body["code"] == "unknown_business"


async def test_missing_variable_is_a_400_from_the_router(gateway: RunningGateway) -> None:
    async with sdk(gateway) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="product_review", messages=MESSAGES)
    assert caught.value.body["code"] == "missing_variable"
