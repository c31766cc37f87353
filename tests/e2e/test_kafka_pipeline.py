"""The seven agents as seven `relaychain worker` processes on the real broker, answered by the instant model.

One set of workers serves the whole module (starting seven processes, the
retriever indexing the car spec sheets with MiniLM, is most of its time):
the first test publishes 50 requests across three businesses through
`relaychain publish`; the second kills the generator in the middle of car-blog
chains and starts another one.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

from relaychain import topology
from relaychain.agents.stores import SqliteLedger
from relaychain.bus import Message
from relaychain.bus.codec import EventCodec
from relaychain.bus.kafka import KafkaBus, KafkaSettings
from relaychain.schemas import PUBLIC_EVENTS, Request, Response, Usage
from tests.e2e.workers import WorkerPool, create_relaychain_topics
from tests.support.instant_model import (
    INSTANT_API_KEY_ENV,
    instant_model,
    script_instant_replies,
    write_instant_config,
)
from tests.support.openai_server import OpenAITestServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.kafka

CODEC = EventCodec(PUBLIC_EVENTS)
BUSINESSES = ("ops_push", "news_comment", "car_blog")
CHAIN_STEPS = ("generate.opening", "generate.middle", "generate.ending")
VARIABLES = {
    "ops_push": {"campaign": "spring sale", "audience": "returning customers"},
    "news_comment": {"headline": "City opens a new cycling bridge"},
    "car_blog": {"car": "Halvorsen Nordkap E7"},
}


@dataclass
class Pipeline:
    pool: WorkerPool
    server: OpenAITestServer
    config: Path
    data_dir: Path
    bootstrap: str

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "ledger.sqlite3"

    def schema(self, business: str) -> dict:
        return json.loads((self.config.parent / "schemas" / f"{business}.json").read_text())


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[Pipeline]:
    directory = tmp_path_factory.mktemp("pipeline")
    with OpenAITestServer() as server:
        script_instant_replies(server, BUSINESSES)
        config = write_instant_config(directory, server.base_url, BUSINESSES)
        data_dir = directory / "data"
        create_relaychain_topics(kafka_bootstrap)
        env = {"RELAYCHAIN_CONFIG": str(config), "RELAYCHAIN_DATA_DIR": str(data_dir), INSTANT_API_KEY_ENV: "test"}
        pool = WorkerPool(directory, kafka_bootstrap, env)
        started = time.monotonic()
        workers = [pool.start(agent) for agent in topology.AGENTS]
        try:
            pool.wait_running(workers)
            print(f"seven workers running after {time.monotonic() - started:.1f}s")
            yield Pipeline(pool, server, config, data_dir, kafka_bootstrap)
        finally:
            exits = pool.stop_all()
    bad = {name: code for name, code in exits.items() if code != 0}
    assert not bad, f"workers did not drain cleanly: {bad}"


def requests_across_businesses(count: int) -> list[Request]:
    return [
        Request(
            business=BUSINESSES[i % 3],
            input=f"Request {i}: write it for our readers.",
            vars=VARIABLES[BUSINESSES[i % 3]],
        )
        for i in range(count)
    ]


def expected_usage_lines(requests: list[Request]) -> int:
    return sum(len(CHAIN_STEPS) if r.business == "car_blog" else 1 for r in requests)


async def ledger_calls(path: Path) -> int:
    if not path.exists():
        return 0
    ledger = SqliteLedger(path)
    try:
        return sum(row.calls for row in await ledger.totals())
    finally:
        await ledger.close()


async def wait_for_ledger(path: Path, calls: int, timeout: float = 30) -> None:
    """The tokenizer records usage off the critical path: wait until it has drained the usage topic."""
    seen = 0

    async def count() -> None:
        nonlocal seen
        seen = await ledger_calls(path)

    deadline = time.monotonic() + timeout
    while True:
        await count()
        if seen >= calls or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # anything billed twice would land now
    await count()
    assert seen == calls, f"ledger has {seen} usage lines, expected {calls}"


def assert_answered(pipeline: Pipeline, request: Request, answer: Response) -> None:
    assert isinstance(answer, Response), answer
    jsonschema.validate(answer.output, pipeline.schema(request.business))
    steps = [line.step for line in answer.usage]
    assert steps == (list(CHAIN_STEPS) if request.business == "car_blog" else ["generate"])
    assert all(line.input_tokens == 40 and line.output_tokens == 20 and line.cost > 0 for line in answer.usage)
    assert answer.model == instant_model(request.business)
    assert [c.currency for c in answer.cost] == ["USD"] and answer.cost[0].amount == sum(
        line.cost for line in answer.usage
    )


async def test_fifty_requests_across_three_businesses_all_answered(pipeline: Pipeline, tmp_path: Path) -> None:
    requests = requests_across_businesses(50)
    lines = tmp_path / "requests.jsonl"
    lines.write_text("".join(r.model_dump_json() + "\n" for r in requests))
    calls_before = await ledger_calls(pipeline.ledger_path)

    command = [
        sys.executable,
        "-m",
        "relaychain.cli",
        "publish",
        "--bus",
        f"kafka://{pipeline.bootstrap}",
        str(lines),
        "--timeout",
        "90",
    ]
    env = pipeline.pool.environment("publisher") | {"RELAYCHAIN_DATA_DIR": str(tmp_path)}
    started = time.monotonic()
    published = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, timeout=150)
    print(f"50 requests answered through `relaychain publish` in {time.monotonic() - started:.1f}s")
    assert published.returncode == 0, published.stderr.decode(errors="replace")

    answers = [CODEC.decode(line) for line in published.stdout.splitlines() if line.strip()]
    by_request = {a.request_id: a for a in answers}
    assert len(answers) == 50 and set(by_request) == {r.request_id for r in requests}
    for request in requests:
        assert_answered(pipeline, request, by_request[request.request_id])
    await wait_for_ledger(pipeline.ledger_path, calls_before + expected_usage_lines(requests))


async def collect(bus: KafkaBus, topic: str) -> list[Message]:
    received: list[Message] = []

    async def keep(message: Message) -> None:
        received.append(message)

    await bus.subscribe([topic], group=f"e2e.reader.{uuid.uuid4().hex[:8]}", handler=keep)
    return received


async def test_generator_killed_mid_chain_every_request_answered_once_and_billed_once(pipeline: Pipeline) -> None:
    count = 10
    model = instant_model("car_blog")
    calls_before = await ledger_calls(pipeline.ledger_path)
    attempts_before = pipeline.server.attempts(model)
    # Each chain step takes a second at the model, so the kill lands while the middle steps are in flight.
    script_instant_replies(pipeline.server, ["car_blog"], delay_s=1.0)
    bus = KafkaBus(KafkaSettings(bootstrap_servers=[pipeline.bootstrap]))
    await bus.start()
    try:
        responses = await collect(bus, topology.RESPONSES)
        usages = await collect(bus, topology.USAGE)
        requests = [
            Request(business="car_blog", input=f"Brief {i}: a weekend road trip.", vars=VARIABLES["car_blog"])
            for i in range(count)
        ]
        mine = {r.request_id for r in requests}
        await asyncio.gather(*(bus.publish(topology.REQUESTS, CODEC.encode(r), key=r.key) for r in requests))

        await eventually(lambda: pipeline.server.attempts(model) - attempts_before >= count + 2, timeout=60)
        [generator] = [w for w in pipeline.pool.workers if w.name == "generator" and w.process.poll() is None]
        generator.kill()
        answered_at_kill = {CODEC.decode(m.value).request_id for m in responses} & mine
        assert len(answered_at_kill) < count, "every chain finished before the kill; the test proves nothing"

        replacement = pipeline.pool.start("generator", name="generator-2")
        await asyncio.to_thread(pipeline.pool.wait_running, [replacement])

        answer_ids: dict[str, set[str]] = defaultdict(set)
        answers: dict[str, Response] = {}

        def all_answered() -> bool:
            for message in responses:
                answer = CODEC.decode(message.value)
                if answer.request_id in mine:
                    answer_ids[answer.request_id].add(answer.id)
                    answers[answer.request_id] = answer
            return len(answer_ids) == count

        await eventually(all_answered, timeout=90)
        # A step re-run after the crash may put a second copy of an event on the log (at-least-once
        # delivery), but under the SAME id, derived from its input's id: the caller sees one answer.
        assert all(len(ids) == 1 for ids in answer_ids.values()), answer_ids
        for request in requests:
            assert_answered(pipeline, request, answers[request.request_id])

        # The killed worker's in-flight calls were made again by its replacement ...
        assert pipeline.server.attempts(model) - attempts_before > count * len(CHAIN_STEPS)
        # ... yet each (request, step) has one usage id, and the ledger, idempotent on it, bills it once.
        await wait_for_ledger(pipeline.ledger_path, calls_before + count * len(CHAIN_STEPS))
        usage_ids: dict[tuple[str, str], set[str]] = defaultdict(set)
        for message in usages:
            usage = CODEC.decode(message.value)
            assert isinstance(usage, Usage)
            if usage.request_id in mine:
                usage_ids[usage.request_id, usage.usage.step].add(usage.id)
        assert set(usage_ids) == {(r, step) for r in mine for step in CHAIN_STEPS}
        assert all(len(ids) == 1 for ids in usage_ids.values()), usage_ids
        with sqlite3.connect(pipeline.ledger_path) as db:
            billed = {row[0] for row in db.execute("SELECT event_id FROM usage_events")}
        assert {i for ids in usage_ids.values() for i in ids} <= billed
    finally:
        script_instant_replies(pipeline.server, ["car_blog"])
        await bus.stop()
