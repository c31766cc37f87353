"""relaychain.App and relaychain.Client on the memory bus: ask, submit, stream, your own agent on a slip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relaychain import (
    AnswerTimeout,
    App,
    Client,
    Error,
    ErrorCode,
    Progress,
    Request,
    Response,
    Settings,
    insert_step,
    load_settings,
)
from relaychain.app import make_codec, make_routes
from relaychain.bus.memory import MemoryBus
from relaychain.bus.runtime import AgentRuntime
from tests.support.agents import Echo
from tests.support.instant_model import INSTANT_API_KEY_ENV, script_instant_replies, write_instant_config
from tests.support.openai_server import OpenAITestServer

BUSINESSES = ("ops_push", "news_comment")
OPS = {"campaign": "Double 11", "audience": "new users"}


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as server:
        script_instant_replies(server, BUSINESSES)
        yield server


@pytest.fixture
def settings(server: OpenAITestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv(INSTANT_API_KEY_ENV, "test")
    config = write_instant_config(tmp_path, server.base_url, BUSINESSES)
    return load_settings(config, data_dir=tmp_path / "data", observability={"exporters": ["none"]})


async def test_ask_submit_and_stream_on_the_embedded_app(settings: Settings) -> None:
    async with App(settings) as app:
        answer = await app.ask(business="ops_push", input="20% off kettles", vars=OPS)
        assert isinstance(answer, Response) and answer.output["title"]

        futures = [
            await app.submit(Request(business="news_comment", input=f"n{i}", vars={"headline": "h"})) for i in range(3)
        ]
        answers = [await f for f in futures]
        assert all(isinstance(a, Response) and a.business == "news_comment" for a in answers)

        seen = [item async for item in app.stream(business="ops_push", input="stream me", vars=OPS)]
    *progress, final = seen
    assert isinstance(final, Response)
    assert all(isinstance(p, Progress) and p.request_id == final.request_id for p in progress)
    steps = [p.step for p in progress]
    assert steps[:2] == ["route", "moderate.input"] and "generate" in steps, steps


async def test_a_bad_request_is_an_error_answer_with_a_code(settings: Settings) -> None:
    async with App(settings) as app:
        answer = await app.ask(business="nope", input="x")
    assert isinstance(answer, Error) and answer.code == ErrorCode.UNKNOWN_BUSINESS


def test_insert_step_puts_a_step_on_one_business_slip(settings: Settings) -> None:
    changed = insert_step(settings, "ops_push", "sentiment", before="budget")
    steps = changed.app.businesses["ops_push"].steps
    assert steps[steps.index("sentiment") + 1] == "budget"
    assert "sentiment" not in changed.app.businesses["news_comment"].steps
    with pytest.raises(ValueError, match="no step"):
        insert_step(settings, "ops_push", "sentiment", before="nowhere")


async def test_a_client_over_a_bus_you_run() -> None:
    """`Client(bus)`: the bus stays the caller's; answers match by request id, a timeout names the request."""
    bus = MemoryBus()
    async with bus:
        runtime = AgentRuntime(bus, make_codec(), make_routes())
        await runtime.add(Echo(), ["relaychain.requests"], group="echo")
        async with Client(bus) as client:
            answer = await client.ask(business="b", input="ping", timeout=5)
            assert isinstance(answer, Response) and answer.output["echo"] == "ping"
        assert bus.connected
        await runtime.stop()

        async with Client(bus, timeout=0.2) as client:
            with pytest.raises(AnswerTimeout, match="no answer"):
                await client.ask(Request(business="b", input="nobody listens"))


def test_connect_refuses_a_bad_url() -> None:
    with pytest.raises(ValueError, match="unsupported bus URL"):
        Client.connect("redis://localhost")
