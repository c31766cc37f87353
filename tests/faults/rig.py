"""The fault-injection rig: seven `relaychain worker` processes on a broker of their own, under load.

Each scenario gets a fresh Tansu broker (so killing or pausing it harms no
other test), an OpenAI-compatible test server that answers every call after
`MODEL_DELAY_S` and counts the calls it serves, and the seven agents as
processes. `Rig.load()` publishes requests and collects the answers from the
responses topic; `Rig.outcome()` compares them with the requests, the ledger
and the model server's count:

- lost: requests without an answer when the scenario ends;
- duplicated: requests answered under more than one answer id;
- double-billed / unbilled: ledger rows above / below the model jobs;
- double-paid: calls the model server served above the model jobs.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sqlite3
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaTopicPartition

from relaychain import topology
from relaychain.app import topic_specs
from relaychain.bus import Message
from relaychain.bus.codec import EventCodec
from relaychain.bus.kafka import KafkaBus, KafkaSettings
from relaychain.schemas import PUBLIC_EVENTS, Error, Request, Response
from tests.e2e.workers import WorkerPool, WorkerProcess
from tests.support import tansu
from tests.support.instant_model import (
    INSTANT_API_KEY_ENV,
    instant_model,
    script_instant_replies,
    write_instant_config,
)
from tests.support.openai_server import OpenAITestServer

CODEC = EventCodec(PUBLIC_EVENTS)
BUSINESSES = ("ops_push", "news_comment", "personalized_push")
VARIABLES = {
    "ops_push": {"campaign": "spring sale", "audience": "returning customers"},
    "news_comment": {"headline": "City opens a new cycling bridge"},
    "personalized_push": {"user_name": "Mei", "interests": "hiking"},
}
MODEL_DELAY_S = 0.2
REQUESTS = int(os.environ.get("RELAYCHAIN_FAULT_REQUESTS", "500"))
"""Requests per scenario (the issue asks for at least 500)."""


@dataclass
class Outcome:
    scenario: str
    requests: int
    answered: int
    lost: int
    duplicated: int
    errors: int
    model_jobs: int
    ledger_rows: int
    model_calls: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def double_billed(self) -> int:
        return max(0, self.ledger_rows - self.model_jobs)

    @property
    def unbilled(self) -> int:
        return max(0, self.model_jobs - self.ledger_rows)

    @property
    def double_paid(self) -> int:
        return max(0, self.model_calls - self.model_jobs)

    def line(self) -> str:
        extra = f" ({'; '.join(self.notes)})" if self.notes else ""
        return (
            f"{self.scenario}: load {self.requests} requests in {self.seconds:.1f}s; "
            f"answered {self.answered} / lost {self.lost} / duplicated {self.duplicated} / "
            f"errors {self.errors} / double-billed {self.double_billed} / unbilled {self.unbilled} / "
            f"double-paid {self.double_paid}{extra}"
        )


@dataclass
class Answers:
    """Answers read off the responses topic, by request id and answer id."""

    ids: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    last: dict[str, object] = field(default_factory=dict)

    async def keep(self, message: Message) -> None:
        event = CODEC.decode(message.value)
        self.ids[event.request_id].add(event.id)
        self.last[event.request_id] = event


class Rig:
    """One broker, one model server, seven workers; built by the `rig` fixture, torn down after the scenario."""

    def __init__(self, directory: Path, *, env: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.broker = tansu.start(log_path=directory / "tansu.log")
        self.server = OpenAITestServer().start()
        script_instant_replies(self.server, BUSINESSES, delay_s=MODEL_DELAY_S)
        self.config = write_instant_config(directory, self.server.base_url, BUSINESSES)
        self.data_dir = directory / "data"
        self.env = {
            "RELAYCHAIN_CONFIG": str(self.config),
            "RELAYCHAIN_DATA_DIR": str(self.data_dir),
            INSTANT_API_KEY_ENV: "test",
            **(env or {}),
        }
        self.pool = WorkerPool(directory, self.broker.bootstrap, self.env)
        self.answers = Answers()
        self.published: list[Request] = []
        self._bus: KafkaBus | None = None
        self._calls_base = 0
        self._rows_base = 0

    # --- lifecycle ---------------------------------------------------------------

    async def create_topics(self) -> None:
        """The agents' topics, created up front so seven starting workers do not race to create them."""
        bus = KafkaBus(KafkaSettings(bootstrap_servers=[self.broker.bootstrap]))
        await bus.start()
        try:
            await bus.create_topics(topic_specs())
        finally:
            await bus.stop()

    async def start_workers(self) -> list[WorkerProcess]:
        await self.create_topics()
        workers = [self.pool.start(agent) for agent in topology.AGENTS]
        await asyncio.to_thread(self.pool.wait_running, workers, 180)
        return workers

    async def connect(self) -> KafkaBus:
        if self._bus is None:
            self._bus = KafkaBus(KafkaSettings(bootstrap_servers=[self.broker.bootstrap]))
            await self._bus.start()
            await self._bus.subscribe(
                [topology.RESPONSES], group=f"faults.reader.{uuid.uuid4().hex[:8]}", handler=self.answers.keep
            )
        return self._bus

    async def close_client(self) -> None:
        """Stop the test's own producer and answer reader (before the broker goes away)."""
        if self._bus is not None:
            await self._bus.stop()
            self._bus = None

    def start_counting(self) -> None:
        """Count requests, model calls and ledger rows from now on (a scenario's second phase)."""
        self.published.clear()
        self._calls_base = self.model_calls()
        self._rows_base = self.ledger_rows()

    async def close(self) -> dict[str, int]:
        await self.close_client()
        exits = await asyncio.to_thread(self.pool.stop_all)
        self.server.stop()
        self.broker.stop()
        return exits

    def worker(self, name: str) -> WorkerProcess:
        return next(w for w in reversed(self.pool.workers) if w.name == name and w.process.poll() is None)

    # --- load ------------------------------------------------------------------------

    @staticmethod
    def requests(count: int, *, tag: str = "") -> list[Request]:
        made = []
        for i in range(count):
            business = BUSINESSES[i % len(BUSINESSES)]
            made.append(
                Request(
                    business=business,
                    input=f"Request {tag}{i}: write it for our readers.",
                    vars=VARIABLES[business],
                    # One conversation per request: memory keeps order per key, not across requests.
                    conversation_id=f"conv-{tag}{i}" if business == "personalized_push" else None,
                )
            )
        return made

    async def publish(self, requests: Sequence[Request]) -> None:
        bus = await self.connect()
        self.published.extend(requests)
        for start in range(0, len(requests), 100):
            chunk = requests[start : start + 100]
            await asyncio.gather(*(bus.publish(topology.REQUESTS, CODEC.encode(r), key=r.key) for r in chunk))

    async def wait_answered(self, requests: Sequence[Request], timeout: float) -> bool:
        wanted = {r.request_id for r in requests}
        deadline = time.monotonic() + timeout
        while not wanted <= self.answers.ids.keys():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    # --- measures --------------------------------------------------------------------

    def model_calls(self) -> int:
        """Calls the model server answered to a connected caller: what the provider bills."""
        return sum(self.server.served(instant_model(b)) for b in BUSINESSES)

    def model_attempts(self) -> int:
        return sum(self.server.attempts(instant_model(b)) for b in BUSINESSES)

    def ledger_rows(self) -> int:
        path = self.data_dir / "ledger.sqlite3"
        if not path.exists():
            return 0
        with sqlite3.connect(path, timeout=30) as db:
            return int(db.execute("SELECT count(*) FROM usage_events").fetchone()[0])

    async def wait_billed(self, jobs: int, timeout: float = 60, rows: object = None) -> int:
        """Usage is recorded off the critical path: wait until the ledger has `jobs` rows (or time runs out)."""
        count = rows if callable(rows) else self.ledger_rows
        deadline = time.monotonic() + timeout
        seen = await asyncio.to_thread(count)
        while seen - self._rows_base < jobs and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            seen = await asyncio.to_thread(count)
        await asyncio.sleep(1.0)  # anything billed twice would land now
        return await asyncio.to_thread(count)

    def outcome(
        self,
        scenario: str,
        seconds: float,
        *,
        ledger_rows: int,
        notes: Sequence[str] = (),
        model_jobs: int | None = None,
    ) -> Outcome:
        """`model_jobs` defaults to the requests answered with a `Response` (one model call each)."""
        wanted = {r.request_id for r in self.published}
        answered = wanted & self.answers.ids.keys()
        errors = sum(1 for r in answered if isinstance(self.answers.last[r], Error))
        codes = Counter(
            getattr(self.answers.last[r], "code", "") for r in answered if isinstance(self.answers.last[r], Error)
        )
        notes = [*notes, *(f"{n} x {code}" for code, n in codes.items())]
        if model_jobs is None:
            model_jobs = sum(1 for r in answered if isinstance(self.answers.last[r], Response))
        return Outcome(
            scenario=scenario,
            requests=len(wanted),
            answered=len(answered),
            lost=len(wanted - answered),
            duplicated=sum(1 for r in answered if len(self.answers.ids[r]) > 1),
            errors=errors,
            model_jobs=model_jobs,
            ledger_rows=ledger_rows - self._rows_base,
            model_calls=self.model_calls() - self._calls_base,
            seconds=seconds,
            notes=list(notes),
        )

    async def consumer_lag(self) -> dict[str, int]:
        """Per agent group: messages on its inbox topics past its committed offset (0 when all is acknowledged)."""
        lag: dict[str, int] = {}
        for agent, topics in topology.AGENT_INBOXES.items():
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.broker.bootstrap, group_id=topology.group_of(agent), enable_auto_commit=False
            )
            await consumer.start()
            try:
                await consumer.topics()
                partitions = [
                    KafkaTopicPartition(topic, p)
                    for topic in topics
                    for p in consumer.partitions_for_topic(topic) or ()
                ]
                ends = await consumer.end_offsets(partitions)
                total = 0
                for tp in partitions:
                    committed = await consumer.committed(tp) or 0
                    total += max(0, ends[tp] - committed)
                lag[agent] = total
            finally:
                await consumer.stop()
        return lag

    async def read_topic(self, topic: str) -> list[object]:
        """Every event `topic` holds now, read up to its end offsets."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.broker.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            await consumer.topics()
            partitions = [KafkaTopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            events: list[object] = []
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(timeout_ms=500)
                events.extend(CODEC.decode(r.value) for records in batches.values() for r in records if r.value)
            return events
        finally:
            await consumer.stop()

    def repaid_after(self, kills: Sequence[float]) -> list[float]:
        """For each extra answer to a prompt the provider had answered before: seconds from its first answer
        to the next kill.

        A job re-paid after a SIGKILL had its first answer delivered and not yet journalled when the worker
        died; that gap is the window the journal cannot close. `inf` marks a re-payment with no kill after the
        first answer (a bug: nothing but a crash may make the generator pay again).
        """
        served: dict[str, list[float]] = defaultdict(list)
        for at, request in self.server.served_log():
            served[json.dumps(request.body.get("messages"), sort_keys=True)].append(at)
        gaps = []
        for times in served.values():
            gaps += [_gap_to_kill(times[0], kills)] * (len(times) - 1)
        return sorted(gaps)

    def repaid_detail(self, kills: Sequence[float]) -> list[str]:
        """What each re-paid prompt's answers and the kills looked like (for a failing assertion)."""
        served: dict[str, list[float]] = defaultdict(list)
        for at, request in self.server.served_log():
            served[json.dumps(request.body.get("messages"), sort_keys=True)].append(at)

        repaid = sorted((p for p in served.items() if len(p[1]) > 1), key=lambda p: -_gap_to_kill(p[1][0], kills))
        return [
            f"{prompt[-60:]} answered at {[round(t, 3) for t in times]}, kills at {[round(k, 3) for k in kills]}"
            for prompt, times in repaid[:4]
        ]

    # --- faults ----------------------------------------------------------------------

    def pause_broker(self) -> None:
        os.kill(self.broker.pid, signal.SIGSTOP)

    def resume_broker(self) -> None:
        os.kill(self.broker.pid, signal.SIGCONT)

    def restart_broker(self) -> None:
        """Start the broker again on the same port (Tansu in memory comes back empty: topics are re-created)."""
        self.broker = tansu.start(self.broker.port, log_path=self.directory / "tansu-2.log")


KILL_SETTLE_S = 0.1
"""A killed process's sockets close a few milliseconds after SIGKILL: an answer written then still reached
the kernel of a client that was already dead, and counts as answered at the kill."""


def _gap_to_kill(answered_at: float, kills: Sequence[float]) -> float:
    after = [max(0.0, k - answered_at) for k in kills if k >= answered_at - KILL_SETTLE_S]
    return min(after) if after else math.inf


def readyz(worker: WorkerProcess) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.health_port}/readyz", timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0
