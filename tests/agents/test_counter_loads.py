"""Token counters loaded off the loop, once each: the unasked models' at warm-up, a hinted one by its first step."""

from __future__ import annotations

import asyncio

import pytest

from relaychain.agents.tokens.counter_loads import CounterLoads
from relaychain.bus.errors import AgentError
from relaychain.schemas.config import AppConfig

PRICE = {"input_per_million": "1", "output_per_million": "1", "currency": "USD"}


def model(fallback: str | None = None, *, available: bool = True) -> dict[str, object]:
    return {
        "provider": "openai",
        "tokenizer": "tiktoken:cl100k_base",
        "context_window": 1000,
        "max_output_tokens": 100,
        "price": PRICE,
        "fallback": fallback,
        "available": available,
    }


CONFIG = AppConfig.model_validate(
    {
        "models": {
            "default": model("fallback"),
            "fallback": model(),
            "hinted": model(),
            "off": model(available=False),
        },
        "businesses": {
            "chat": {
                "default_model": "default",
                "allowed_models": ["default", "hinted", "off"],
                "templates": {"default": "chat.j2"},
                "output_schema": "text",
                "steps": ["budget", "generate"],
            },
        },
        "output_schemas": {"text": "schemas/text.json"},
    }
)


def test_unasked_models_are_the_defaults_and_their_fallbacks() -> None:
    assert CONFIG.unasked_models() == {"default", "fallback"}


def test_a_fallback_chain_is_in_order_and_ends_where_it_would_loop() -> None:
    looping = CONFIG.model_copy(update={"models": {**CONFIG.models, "fallback": CONFIG.models["default"]}})
    assert CONFIG.fallback_chain("default") == ["default", "fallback"]
    assert looping.fallback_chain("default") == ["default", "fallback"]
    assert CONFIG.fallback_chain("hinted") == ["hinted"]


async def test_warm_up_loads_the_unasked_models_counters_and_a_step_the_hinted_one() -> None:
    built: list[str] = []
    loads = CounterLoads(lambda name: built.append(name) or name)

    await loads.warm_up(CONFIG, ["default", "fallback", "hinted", "off"], "budget steps")
    assert built == ["default", "fallback"], "a request without a hint finds its counters loaded"

    assert await loads.get("hinted") == "hinted"
    assert await loads.get("default") == "default"
    assert built == ["default", "fallback", "hinted"], "each built once; an unavailable model's never"


async def test_two_steps_share_one_load() -> None:
    built: list[str] = []
    loads = CounterLoads(lambda name: built.append(name) or name)
    # Both ask before the load's thread has run: the second finds the first's load in flight.
    assert await asyncio.gather(loads.get("hinted"), loads.get("hinted")) == ["hinted", "hinted"]
    assert built == ["hinted"]


async def test_a_failed_load_is_a_typed_error_and_is_tried_again() -> None:
    attempts: list[str] = []

    def build(name: str) -> str:
        attempts.append(name)
        if len(attempts) == 1:
            raise OSError("no tokenizer file")
        return name

    loads = CounterLoads(build)
    with pytest.raises(AgentError) as raised:
        await loads.get("default")
    assert raised.value.code == "tokenizer_unavailable"
    assert await loads.get("default") == "default"
    assert attempts == ["default", "default"]
