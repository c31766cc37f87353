"""Router: every shipped business x allowed model renders; each bad input gives its typed error."""

from __future__ import annotations

from decimal import Decimal

import pytest

from relaychain.agents.prompts import PromptLibrary
from relaychain.agents.router import RouterAgent
from relaychain.bus.errors import AgentError
from relaychain.schemas import ChatMessage, Job, Request
from relaychain.settings import Settings, load_settings

VARS = {
    "campaign": "Double 11",
    "audience": "new users",
    "user_name": "Li Lei",
    "interests": "hiking",
    "region": "Chengdu",
    "product": "kettle",
    "rating": 4,
    "headline": "City opens new metro line",
    "car": "Aurora EV7",
}


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


@pytest.fixture
def router(settings: Settings) -> RouterAgent:
    return RouterAgent(settings.app, PromptLibrary(settings.app, settings.config_dir))


def all_pairs() -> list[tuple[str, str]]:
    app = load_settings().app
    return [(b, m) for b, config in app.businesses.items() for m in config.allowed_models]


@pytest.mark.parametrize(("business", "model"), all_pairs())
async def test_every_shipped_business_and_model_routes(
    router: RouterAgent, settings: Settings, business: str, model: str
) -> None:
    config = settings.app.businesses[business]
    [job] = await router.handle(Request(business=business, model=model, input="autumn sale, 20% off", vars=VARS))
    assert isinstance(job, Job)
    assert job.slip == config.steps
    expected = model if settings.app.models[model].available else job.model
    assert job.model == expected and settings.app.models[job.model].available
    if not config.chain:
        assert "autumn sale" in job.prompt[-1].content
        assert job.prompt[-1].role == "user"


async def test_default_model_when_request_names_none(router: RouterAgent, settings: Settings) -> None:
    [job] = await router.handle(Request(business="ops_push", input="x", vars=VARS))
    assert isinstance(job, Job) and job.model == settings.app.businesses["ops_push"].default_model


async def test_per_model_template_overrides_the_business_default(router: RouterAgent) -> None:
    [default] = await router.handle(Request(business="ops_push", model="gpt-4o-mini", input="x", vars=VARS))
    [special] = await router.handle(Request(business="ops_push", model="gpt-4o", input="x", vars=VARS))
    assert isinstance(default, Job) and isinstance(special, Job)
    assert "Campaign: Double 11" in special.prompt[-1].content
    assert "Campaign: Double 11" not in default.prompt[-1].content


async def test_unavailable_model_falls_back_along_the_chain(router: RouterAgent) -> None:
    [job] = await router.handle(Request(business="weibo_regional", model="chatglm-6b", input="x", vars=VARS))
    assert isinstance(job, Job) and job.model == "smollm2-135m"


async def test_over_budget_model_falls_back(settings: Settings) -> None:
    app = settings.app.model_copy(
        update={
            "businesses": {
                **settings.app.businesses,
                "ops_push": settings.app.businesses["ops_push"].model_copy(update={"daily_budget": Decimal("5")}),
            }
        }
    )

    async def spend(business: str, model: str) -> Decimal:
        return Decimal("7") if model == "gpt-4o" else Decimal("0")

    router = RouterAgent(app, PromptLibrary(app, settings.config_dir), spend)
    [job] = await router.handle(Request(business="ops_push", model="gpt-4o", input="x", vars=VARS))
    assert isinstance(job, Job) and job.model == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("request_fields", "code"),
    [
        ({"business": "nope"}, "unknown_business"),
        ({"business": "ops_push", "model": "gpt-4"}, "model_not_allowed"),
        ({"business": "ops_push", "vars": {"campaign": "x"}}, "missing_variable"),
        ({"business": "ops_push", "input": "x" * 20_001}, "input_too_long"),
    ],
)
async def test_bad_requests_get_typed_errors(router: RouterAgent, request_fields: dict, code: str) -> None:
    fields = {"input": "hello", "vars": VARS} | request_fields
    with pytest.raises(AgentError) as caught:
        await router.handle(Request(**fields))
    assert caught.value.code == code


async def test_template_variables_are_data_not_code(router: RouterAgent) -> None:
    hostile = VARS | {
        "campaign": "{{ 7 * 7 }} {% for x in range(3) %}loop{% endfor %}",
        "audience": "{{ ''.__class__ }}",
    }
    [job] = await router.handle(Request(business="ops_push", input="{{ config }}", vars=hostile))
    assert isinstance(job, Job)
    text = job.prompt[-1].content
    assert "{{ 7 * 7 }}" in text and "49" not in text and "loop" not in text.replace("{% for x in range(3) %}loop", "")
    assert "{{ config }}" in text


# --- the caller's whole request is bounded (issue 10) ------------------------


def chat(turns: int, size: int = 10) -> tuple[ChatMessage, ...]:
    history = [
        ChatMessage(role=role, content=f"{role} {n} " + "x" * size)
        for n in range(turns)
        for role in ("user", "assistant")
    ]
    return (ChatMessage(role="system", content="Be brief."), *history, ChatMessage(role="user", content="now?"))


async def test_a_callers_history_is_bounded_by_the_window_policy(router: RouterAgent) -> None:
    """personalized_push keeps 6 turns: the job carries those, in its history and in its request."""
    messages = chat(40)
    [job] = await router.handle(Request(business="personalized_push", messages=messages, vars=VARS))
    assert isinstance(job, Job)
    assert job.request.messages == (messages[0], *messages[-13:])
    assert job.history == job.request.messages[:-1]
    assert job.request.messages[-1].content == "now?"


async def test_a_callers_history_is_bounded_by_tokens(settings: Settings) -> None:
    """product_review keeps 1024 tokens of history: the newest messages that fit, counted by the model's counter."""
    words = WordCounter()
    router = RouterAgent(settings.app, PromptLibrary(settings.app, settings.config_dir), counter_for=lambda _: words)
    messages = chat(400, size=0)  # each history message is 2 words
    [job] = await router.handle(Request(business="product_review", messages=messages, vars=VARS))
    assert isinstance(job, Job)
    kept = job.request.messages[1:-1]
    assert sum(words.count(m.content) for m in kept) == 1024 and kept == messages[-513:-1]


async def test_the_whole_request_text_counts_against_max_input_chars(router: RouterAgent) -> None:
    """Every message counts, not only the last: a long history would otherwise ride on every later event."""
    messages = (ChatMessage(role="user", content="y" * 15_000), ChatMessage(role="assistant", content="ok")) * 2 + (
        ChatMessage(role="user", content="short"),
    )
    with pytest.raises(AgentError) as caught:
        await router.handle(Request(business="ops_push", messages=messages, vars=VARS))
    assert caught.value.code == "input_too_long" and caught.value.details["chars"] == 30_009
    [job] = await router.handle(Request(business="ops_push", messages=messages[-3:], vars=VARS))
    assert isinstance(job, Job)


class WordCounter:
    def count(self, text: str) -> int:
        return len(text.split())


async def test_warm_up_loads_the_counters_token_policies_need(settings: Settings) -> None:
    asked: list[str] = []

    def counter_for(model: str) -> WordCounter:
        asked.append(model)
        return WordCounter()

    router = RouterAgent(settings.app, PromptLibrary(settings.app, settings.config_dir), counter_for=counter_for)
    await router.warm_up()
    token_bounded = {
        model
        for business in settings.app.businesses.values()
        if business.memory.kind in ("tokens", "summary")
        for model in business.allowed_models
        if settings.app.models[model].available
    }
    unasked = token_bounded & settings.app.unasked_models()
    assert unasked and set(asked) == unasked, "requests without a model hint find their counters loaded"
    for model in sorted(token_bounded - unasked):
        await router.handle(Request(business="product_review", model=model, messages=chat(3), vars=VARS))
    await router.handle(Request(business="product_review", messages=chat(3), vars=VARS))
    assert set(asked) == token_bounded and len(asked) == len(token_bounded), (
        "a hinted model's by its first request, once"
    )
