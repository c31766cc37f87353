"""`relaychain chat`: one conversation over several lines of input, answered by the instant model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from relaychain.cli import main
from tests.support.instant_model import (
    INSTANT_API_KEY_ENV,
    INSTANT_REPLIES,
    instant_model,
    script_instant_replies,
    write_instant_config,
)
from tests.support.openai_server import OpenAITestServer

# The two shipped businesses with memory: a window of turns, and a token budget.
MEMORY_BUSINESSES = {
    "personalized_push": ["user_name=Ana", "interests=hiking"],
    "product_review": ["product=Trail boots", "rating=4"],
}


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as server:
        script_instant_replies(server, MEMORY_BUSINESSES)
        config = write_instant_config(tmp_path, server.base_url, MEMORY_BUSINESSES)
        monkeypatch.setenv("RELAYCHAIN_CONFIG", str(config))
        monkeypatch.setenv("RELAYCHAIN_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv(INSTANT_API_KEY_ENV, "test")
        yield server


def prompt_text(body: dict) -> str:
    return "\n".join(message["content"] for message in body["messages"])


@pytest.mark.parametrize("business", sorted(MEMORY_BUSINESSES))
def test_second_turn_sees_the_first(server: OpenAITestServer, business: str) -> None:
    variables = [arg for pair in MEMORY_BUSINESSES[business] for arg in ("--var", pair)]
    turns = "The soles wore out after a month.\nWill you replace them?\n/exit\nnever read\n"
    result = CliRunner().invoke(
        main, ["chat", "--business", business, "--conversation", "c-1", *variables], input=turns
    )

    assert result.exit_code == 0, result.output
    first, second = [r.body for r in server.requests if r.model == instant_model(business)]
    assert "The soles wore out after a month." in prompt_text(first)
    assert "Will you replace them?" not in prompt_text(first)
    # Memory: the second call carries the first turn, the user's line and the formatted answer.
    assert "The soles wore out after a month." in prompt_text(second)
    assert json.loads(INSTANT_REPLIES[business]) == json.loads(
        next(m["content"] for m in second["messages"] if m["role"] == "assistant")
    )
    assert "conversation c-1" in result.output
    assert result.output.count("tokens: 40 in, 20 out") == 2
    first_field = next(iter(json.loads(INSTANT_REPLIES[business]).values()))
    assert result.output.count(first_field) == 2  # each answer's JSON printed


def test_end_of_input_ends_the_session_and_a_new_one_resumes_the_conversation(server: OpenAITestServer) -> None:
    variables = ["--var", "user_name=Ana", "--var", "interests=hiking"]
    runner = CliRunner()
    assert (
        runner.invoke(
            main,
            ["chat", "--business", "personalized_push", "--conversation", "c-2", *variables],
            input="Boots on sale?\n",
        ).exit_code
        == 0
    )
    resumed = runner.invoke(
        main, ["chat", "--business", "personalized_push", "--conversation", "c-2", *variables], input="And tents?"
    )

    assert resumed.exit_code == 0, resumed.output
    last = server.requests[-1].body
    assert "Boots on sale?" in prompt_text(last) and "And tents?" in prompt_text(last)


def test_unknown_business_is_a_usage_error(server: OpenAITestServer) -> None:
    result = CliRunner().invoke(main, ["chat", "--business", "nope"], input="hi\n")
    assert result.exit_code == 2
    assert "no business 'nope'" in result.output
