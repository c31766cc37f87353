"""Shared by the benches: an instant in-process chat model and the LangChain LCEL baseline.

The instant model answers at once with a fixed, schema-valid JSON text and
token counts, so a bench measures the framework, not a model. It plugs into
relaychain through `Components(settings, model_factories=instant_factories())`
(every provider gets it). The baseline is the chain LangChain users write for
the same job: `ChatPromptTemplate | FakeListChatModel | JsonOutputParser`,
answering with the same JSON text.
"""

from __future__ import annotations

import json
from typing import Any

from relaychain.agents.llm import ChatModel, Completion, CompletionRequest, ModelFactory
from relaychain.schemas.config import ModelConfig, Provider

REPLIES: dict[str, dict[str, Any]] = {
    "ops_push": {"title": "Double 11 is here", "body": "Everything half price until midnight, only in the app."},
    "personalized_push": {"title": "New trail shoes", "body": "Ada, the trail shoes you liked are back in your size."},
    "weibo_regional": {
        "region": "Chengdu",
        "post": "Hotpot season opens this weekend in Chengdu.",
        "hashtags": ["Chengdu"],
    },
    "product_review": {"reply": "Thank you for the kind review, enjoy the kettle!", "sentiment": "positive"},
    "news_comment": {"comment": "Good to see the bridge finally open to cyclists.", "stance": "support"},
}
OUTPUT_TOKENS = 24


class InstantModel:
    """A `ChatModel` that answers immediately with the reply for the schema it is given (by its title)."""

    def __init__(self, name: str, config: ModelConfig) -> None:
        self.name = name
        self.provider = config.provider.value
        self._texts = {business: json.dumps(reply, ensure_ascii=False) for business, reply in REPLIES.items()}
        self._default = self._texts["ops_push"]

    async def load(self) -> None:
        """Nothing to load."""

    async def complete(self, request: CompletionRequest) -> Completion:
        title = request.json_schema.get("title") if request.json_schema else None
        text = self._texts.get(title, self._default) if isinstance(title, str) else self._default
        return Completion(
            text=text,
            model=self.name,
            response_model=self.name,
            provider=self.provider,
            input_tokens=sum(len(m.content) for m in request.messages) // 4,
            output_tokens=OUTPUT_TOKENS,
            finish_reason="stop",
            latency_ms=0.0,
        )

    async def aclose(self) -> None:
        """Nothing to release."""


def instant_factories() -> dict[Provider, ModelFactory]:
    def factory(name: str, config: ModelConfig) -> ChatModel:
        return InstantModel(name, config)

    return {provider: factory for provider in Provider}


def langchain_chain(business: str = "ops_push") -> Any:
    """prompt | fake chat model | JSON parser, answering `business`'s reply; inputs: campaign, audience, input."""
    from langchain_core.language_models import FakeListChatModel
    from langchain_core.output_parsers import JsonOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    prompt = ChatPromptTemplate.from_messages(
        [
            (
                "system",
                "You are a careful copywriter for the {business} channel. Answer with JSON only when asked for JSON.",
            ),
            (
                "human",
                (
                    'Write a push notification for the campaign "{campaign}" aimed at {audience}.\n'
                    "Key message: {input}\n"
                    'Answer with JSON: {{"title": "...", "body": "..."}}. Title at most 30 characters, body at most 120.'
                ),
            ),
        ]
    )
    model = FakeListChatModel(responses=[json.dumps(REPLIES[business], ensure_ascii=False)])
    return prompt | model | JsonOutputParser()


def langchain_inputs(index: int) -> dict[str, str]:
    return {
        "business": "ops_push",
        "campaign": "Double 11",
        "audience": "students",
        "input": f"Half price on everything, offer {index}",
    }
