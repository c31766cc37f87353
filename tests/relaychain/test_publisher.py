"""`relaychain publish`: lines streamed through a real client, answers printed as they come, every line accounted for."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from relaychain import topology
from relaychain.app import Components, host_agents, make_codec, make_runtime, topic_specs
from relaychain.bus.base import BusError, Message
from relaychain.bus.client import Client
from relaychain.bus.kafka import KafkaBus, KafkaSettings
from relaychain.bus.memory import MemoryBus
from relaychain.embedded import EmbeddedApp
from relaychain.observability import setup_telemetry
from relaychain.publisher import Publisher, PublishSummary, Retry
from relaychain.schemas import Blocked, Error, Event, Response
from relaychain.settings import Settings, load_settings
from tests.support.instant_model import (
    INSTANT_API_KEY_ENV,
    script_instant_replies,
    write_instant_config,
)
from tests.support.openai_server import OpenAITestServer

BUSINESS = "ops_push"
VARS = {"campaign": "Double 11", "audience": "everyone"}
NO_RETRY_DELAY = Retry(attempts=3, base_delay_s=0.0, max_delay_s=0.0)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    with OpenAITestServer() as server:
        script_instant_replies(server, [BUSINESS])
        monkeypatch.setenv(INSTANT_API_KEY_ENV, "test")
        config = write_instant_config(tmp_path, server.base_url, [BUSINESS])
        yield load_settings(config, data_dir=tmp_path / "data", observability={"exporters": []})


def line(**fields: Any) -> bytes:
    return json.dumps({"business": BUSINESS, "vars": VARS, **fields}).encode() + b"\n"


async def lines_of(*items: bytes) -> AsyncIterator[tuple[int, bytes]]:
    for number, item in enumerate(items, 1):
        yield number, item


class Collected:
    def __init__(self) -> None:
        self.answers: list[Event] = []
        self.problems: list[str] = []

    def publisher(
        self, client: Client, *, timeout: float = 30.0, max_in_flight: int = 8, retry: Retry = NO_RETRY_DELAY
    ):
        return Publisher(
            client,
            timeout=timeout,
            max_in_flight=max_in_flight,
            retry=retry,
            on_answer=self.answers.append,
            on_problem=self.problems.append,
        )


async def test_bad_lines_are_reported_by_number_and_the_other_lines_are_answered(settings: Settings) -> None:
    out = Collected()
    async with EmbeddedApp(settings) as app:
        summary = await out.publisher(app.client).publish(
            lines_of(
                line(input="Spring sale on boots", request_id="r-ok"),
                b"{not json\n",
                b"\n",
                json.dumps({"business": BUSINESS}).encode(),
                line(input="click this bomb deal now", request_id="r-blocked"),
                line(input="again", request_id="r-ok"),
                line(input="x", business="nope", request_id="r-error"),
                line(input="Tents too", request_id="r-ok-2"),
            )
        )

    by_id = {answer.request_id: answer for answer in out.answers}
    assert set(by_id) == {"r-ok", "r-ok-2", "r-blocked", "r-error"}
    assert isinstance(by_id["r-ok"], Response) and isinstance(by_id["r-ok-2"], Response)
    assert isinstance(by_id["r-blocked"], Blocked)
    assert isinstance(by_id["r-error"], Error) and by_id["r-error"].code == "unknown_business"
    assert [p.split(":")[0] for p in out.problems] == ["line 2", "line 4", "line 6"]
    assert "not a valid request" in out.problems[0] and "needs `input` or `messages`" in out.problems[1]
    assert "already sent on line 1" in out.problems[2]
    assert summary == PublishSummary(sent=4, responses=2, errors=1, blocked=1, bad_lines=3)
    assert summary.failed
    assert summary.line() == (
        "sent 4, answered 4 (responses 2, errors 1, blocked 1), timeouts 0, bad lines 3, not sent 0"
    )


async def test_every_line_answered_is_not_a_failure(settings: Settings) -> None:
    out = Collected()
    async with EmbeddedApp(settings) as app:
        summary = await out.publisher(app.client, max_in_flight=3).publish(
            lines_of(*(line(input=f"Sale number {n}") for n in range(10)))
        )
    assert summary == PublishSummary(sent=10, responses=10)
    assert not summary.failed and not out.problems and len(out.answers) == 10


class FlakyBus:
    """A real memory bus whose publishes to the requests topic fail with `BusError` while `failures` lasts."""

    def __init__(self, bus: MemoryBus, failures: int) -> None:
        self._bus = bus
        self.failures = failures
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    async def publish(
        self, topic: str, value: bytes, *, key: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        if topic == topology.REQUESTS and self.refused < self.failures:
            self.refused += 1
            raise BusError(f"publishing to {topic} failed: UnknownError")
        await self._bus.publish(topic, value, key=key, headers=headers)


async def test_a_transient_broker_error_is_retried_and_a_lasting_one_fails_only_its_line(settings: Settings) -> None:
    async with EmbeddedApp(settings) as app:
        flaky = FlakyBus(app.bus, failures=2)
        client = Client(flaky, make_codec(), requests_topic=topology.REQUESTS, answers_topic=topology.RESPONSES)  # type: ignore[arg-type]
        await client.start()
        try:
            out = Collected()
            # One line at a time, so the two refusals land on the first line's three attempts.
            retried = await out.publisher(client, max_in_flight=1).publish(
                lines_of(line(input="Sale", request_id="a"), line(input="Sale", request_id="b"))
            )
            assert flaky.refused == 2 and retried == PublishSummary(sent=2, responses=2) and not out.problems

            flaky.failures += NO_RETRY_DELAY.attempts
            out = Collected()
            lasting = await out.publisher(client, max_in_flight=1).publish(
                lines_of(line(input="Sale", request_id="c"), line(input="Sale", request_id="d"))
            )
        finally:
            await client.stop()
    assert lasting == PublishSummary(sent=1, responses=1, not_sent=1) and lasting.failed
    assert [a.request_id for a in out.answers] == ["d"]
    assert out.problems == [
        "line 1: not sent after 3 attempt(s): publishing to relaychain.requests failed: UnknownError"
    ]


async def test_unanswered_requests_time_out_and_in_flight_is_bounded() -> None:
    bus = MemoryBus()
    published: list[float] = []

    async def record(message: Message) -> None:
        published.append(time.monotonic())

    async with bus:
        await bus.subscribe([topology.REQUESTS], group="observer", handler=record)
        client = Client(bus, make_codec(), requests_topic=topology.REQUESTS, answers_topic=topology.RESPONSES)
        await client.start()
        out = Collected()
        summary = await out.publisher(client, timeout=0.3, max_in_flight=2).publish(
            lines_of(*(line(input="Sale", request_id=f"t{n}") for n in range(4)))
        )
        await bus.run_until_idle()
        await client.stop()

    assert summary == PublishSummary(sent=4, timeouts=4)
    assert sorted(out.problems) == [f"line {n + 1}: no answer for request t{n} within 0.3s" for n in range(4)]
    # Two slots: the third request waits until the first one's timeout frees a slot.
    assert len(published) == 4 and published[2] - published[0] >= 0.29


def test_the_command_exits_1_on_a_bad_line_with_a_summary_and_no_traceback(tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(b"{oops\n")
    command = [sys.executable, "-m", "relaychain.cli", "publish", "--bus", "memory://", str(requests)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=os.environ | {"RELAYCHAIN_DATA_DIR": str(tmp_path)}
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        done.stderr.splitlines()[0],
        "sent 0, answered 0 (responses 0, errors 0, blocked 0), timeouts 0, bad lines 1, not sent 0",
    ]
    assert done.stderr.startswith("line 1: not a valid request") and "Traceback" not in done.stderr


def test_an_unreachable_broker_is_one_line_and_exit_1(tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(line(input="Sale"))
    command = [sys.executable, "-m", "relaychain.cli", "publish", "--bus", "kafka://127.0.0.1:9", str(requests)]
    env = os.environ | {"RELAYCHAIN_DATA_DIR": str(tmp_path)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("Error: broker: cannot reach Kafka"), (
        done.stderr
    )

    verbose = subprocess.run([*command[:3], "-v", *command[3:]], capture_output=True, text=True, timeout=60, env=env)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


# --- on the real broker --------------------------------------------------------


@pytest.mark.kafka
async def test_publish_streams_on_kafka_with_a_worker_answering(
    settings: Settings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The router as the only agent: unknown businesses are answered by it, a bad line is skipped, exit 1."""
    kafka = settings.model_copy(update={"bus": f"kafka://{kafka_bootstrap}"})
    bus = KafkaBus(KafkaSettings(bootstrap_servers=[kafka_bootstrap]))
    telemetry = setup_telemetry(kafka.observability, jsonl_default=tmp_path / "traces.jsonl")
    runtime = make_runtime(bus, kafka, telemetry)
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(
        line(input="a", business="nope", request_id="k1")
        + b"[]\n"
        + line(input="b", business="nope-too", request_id="k2", conversation_id="c")
        + line(input="c", business="nope-too", request_id="k3", conversation_id="c")
    )
    async with bus:
        await bus.create_topics(topic_specs())
        components = Components(kafka)
        await host_agents(runtime, components, ["router"])
        try:
            command = [sys.executable, "-m", "relaychain.cli", "publish", "--timeout", "60", str(requests)]
            env = os.environ | {
                "RELAYCHAIN_CONFIG": str(kafka.config_path),
                "RELAYCHAIN_BUS": kafka.bus,
                "RELAYCHAIN_DATA_DIR": str(tmp_path / "publisher"),
            }
            done = await asyncio.to_thread(
                subprocess.run, command, capture_output=True, text=True, timeout=120, env=env
            )
        finally:
            await runtime.stop(5)
            await components.close()
    assert done.returncode == 1, done.stderr
    answers = [json.loads(text) for text in done.stdout.splitlines()]
    assert sorted(a["request_id"] for a in answers) == ["k1", "k2", "k3"]
    assert {a["code"] for a in answers} == {"unknown_business"}
    problems = done.stderr.splitlines()
    assert problems[0].startswith("line 2: not a valid request")
    assert problems[-1] == "sent 3, answered 3 (responses 0, errors 3, blocked 0), timeouts 0, bad lines 1, not sent 0"
    assert "Traceback" not in done.stderr


def test_the_command_asks_for_workers_when_nothing_was_answered(tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(line(input="Sale", request_id="alone"))
    command = [sys.executable, "-m", "relaychain.cli", "publish", "--bus", "memory://", "--timeout", "0.2", "-"]
    env = os.environ | {"RELAYCHAIN_DATA_DIR": str(tmp_path)}
    done = subprocess.run(command, input=requests.read_text(), capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "line 1: no answer for request alone within 0.2s",
        "no request was answered: are the workers running on memory://?",
        "sent 1, answered 0 (responses 0, errors 0, blocked 0), timeouts 1, bad lines 0, not sent 0",
    ]
