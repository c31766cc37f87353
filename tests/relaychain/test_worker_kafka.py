"""Worker processes on the real broker: crash recovery, graceful drain, one trace across processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaychain.bus import Message, TopicSpec
from relaychain.bus.codec import EventCodec
from relaychain.bus.kafka import KafkaBus, KafkaSettings
from relaychain.observability import read_spans
from relaychain.schemas import PUBLIC_EVENTS, Request, Response
from tests.support.waiting import eventually

pytestmark = pytest.mark.kafka
CODEC = EventCodec(PUBLIC_EVENTS)


class Worker:
    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def spawn(tmp_path: Path, kafka_bootstrap: str) -> Iterator:
    workers: list[Worker] = []

    def start(
        agent: str, inbox: str, routes: dict[str, str], *, name: str, env: dict[str, str] | None = None
    ) -> Worker:
        log = tmp_path / f"{name}.log"
        environment = os.environ | {
            "RELAYCHAIN_BUS": f"kafka://{kafka_bootstrap}",
            "RELAYCHAIN_DATA_DIR": str(tmp_path / "data"),
            "RELAYCHAIN_OBSERVABILITY__JSONL_PATH": str(tmp_path / f"traces-{name}.jsonl"),
            "RELAYCHAIN_OBSERVABILITY__SERVICE_NAME": name,
            "RELAYCHAIN_RUNTIME__ROUTES": json.dumps(routes),
            "RELAYCHAIN_RUNTIME__CREATE_TOPICS": "false",
            "RELAYCHAIN_KAFKA__COMMIT_INTERVAL_S": "0.2",
            "RELAYCHAIN_HEALTH_PORT": "0",
            **(env or {}),
        }
        command = [sys.executable, "-m", "relaychain.cli", "worker", agent, "--inbox", inbox, "--group", f"g.{inbox}"]
        process = subprocess.Popen(command, env=environment, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        worker = Worker(process, log)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


async def wait_running(worker: Worker, timeout: float = 60) -> None:
    await eventually(lambda: "running" in worker.output() or worker.process.poll() is not None, timeout=timeout)
    assert worker.process.poll() is None, worker.output()


async def reader(bus: KafkaBus, topic: str) -> list[tuple[float, Message]]:
    received: list[tuple[float, Message]] = []

    async def collect(message: Message) -> None:
        received.append((time.monotonic(), message))

    await bus.subscribe([topic], group=f"reader.{uuid.uuid4().hex[:6]}", handler=collect)
    return received


@pytest.fixture
async def kafka(kafka_bootstrap: str) -> KafkaBus:
    bus = KafkaBus(KafkaSettings(bootstrap_servers=[kafka_bootstrap], default_partitions=4, commit_interval_s=0.2))
    await bus.start()
    yield bus
    await bus.stop()


async def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(spawn, kafka: KafkaBus) -> None:
    suffix = uuid.uuid4().hex[:6]
    inbox, out = f"crash.in.{suffix}", f"crash.out.{suffix}"
    await kafka.create_topics([TopicSpec(inbox, partitions=4), TopicSpec(out, partitions=4)])
    received = await reader(kafka, out)
    slow = {"RELAYCHAIN_TEST_SLEEP_S": "0.01"}
    first = spawn("tests.support.agents:Echo", inbox, {"response": out}, name="first", env=slow)
    await wait_running(first)
    requests = [Request(business="test", input=f"n{i}", conversation_id=f"c{i % 50}") for i in range(1000)]
    await asyncio.gather(*(kafka.publish(inbox, CODEC.encode(r), key=r.key) for r in requests))
    await eventually(lambda: len(received) >= 150, timeout=60)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    assert len(received) < 1000, "the worker finished before it was killed; the test proves nothing"

    second = spawn("tests.support.agents:Echo", inbox, {"response": out}, name="second")
    await wait_running(second)
    answers_by_request: dict[str, set[str]] = defaultdict(set)

    def all_answered() -> bool:
        answers_by_request.clear()
        for _, message in received:
            answer = CODEC.decode(message.value)
            answers_by_request[answer.request_id].add(answer.id)
        return len(answers_by_request) == 1000

    await eventually(all_answered, timeout=120)
    assert set(answers_by_request) == {r.request_id for r in requests}
    assert all(len(ids) == 1 for ids in answers_by_request.values()), "a re-run emitted a different event id"
    pids = {CODEC.decode(m.value).output["pid"] for _, m in received}
    assert pids == {first.process.pid, second.process.pid}


async def test_sigterm_finishes_in_flight_events_then_exits_zero(spawn, kafka: KafkaBus) -> None:
    suffix = uuid.uuid4().hex[:6]
    inbox, out = f"drain.in.{suffix}", f"drain.out.{suffix}"
    await kafka.create_topics([TopicSpec(inbox, partitions=4), TopicSpec(out, partitions=4)])
    received = await reader(kafka, out)
    worker = spawn(
        "tests.support.agents:Echo", inbox, {"response": out}, name="drain", env={"RELAYCHAIN_TEST_SLEEP_S": "2"}
    )
    await wait_running(worker)
    requests = [Request(business="test", input=f"n{i}", conversation_id=f"k{i}") for i in range(8)]
    await asyncio.gather(*(kafka.publish(inbox, CODEC.encode(r), key=r.key) for r in requests))
    await asyncio.sleep(1.0)
    assert not received
    signalled = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    exit_code = await asyncio.to_thread(worker.process.wait, 30)
    assert exit_code == 0, worker.output()
    assert "draining" in worker.output()
    await eventually(lambda: len(received) == 8, timeout=20)
    assert all(at > signalled for at, _ in received)


async def test_one_trace_across_two_worker_processes(spawn, kafka: KafkaBus, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:6]
    first_in, second_in, out = f"trace.a.{suffix}", f"trace.b.{suffix}", f"trace.out.{suffix}"
    await kafka.create_topics([TopicSpec(t, partitions=2) for t in (first_in, second_in, out)])
    received = await reader(kafka, out)
    routes = {"echo.next": second_in, "response": out}
    forwarder = spawn("tests.support.agents:Forwarder", first_in, routes, name="one")
    echo = spawn("tests.support.agents:Echo", second_in, routes, name="two")
    await wait_running(forwarder)
    await wait_running(echo)
    request = Request(business="test", input="trace me")
    await kafka.publish(first_in, CODEC.encode(request), key=request.key)
    await eventually(lambda: len(received) == 1, timeout=60)
    answer = CODEC.decode(received[0][1].value)
    assert isinstance(answer, Response) and answer.output["echo"] == "trace me"
    for worker in (forwarder, echo):
        worker.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.process.wait, 30) == 0
    one = read_spans(tmp_path / "traces-one.jsonl")
    two = read_spans(tmp_path / "traces-two.jsonl")
    assert len(one) == 1 and len(two) == 1
    assert one[0]["trace_id"] == two[0]["trace_id"]
    assert two[0]["parent_span_id"] == one[0]["span_id"]
    assert one[0]["service"] == "one-forwarder" and two[0]["service"] == "two-echo"
    assert one[0]["attributes"]["relaychain.request.id"] == request.request_id
