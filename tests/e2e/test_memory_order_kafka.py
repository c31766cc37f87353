"""Two memory workers in one group on the real broker, sharing one PostgreSQL store.

Each conversation's events are keyed by its id, so they land on one partition,
which one worker owns: its 50 turns are saved in the order they were published.
Two conversations on partitions owned by different workers show the group
sharing the load.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner

from relaychain import topology
from relaychain.agents.stores.history import PostgresConversationStore
from relaychain.app import topic_specs
from relaychain.bus.codec import EventCodec
from relaychain.bus.kafka import KafkaBus, KafkaSettings
from relaychain.observability import read_spans
from relaychain.schemas import PUBLIC_EVENTS, Job, Request
from tests.e2e.workers import WorkerPool, WorkerProcess, create_relaychain_topics
from tests.support.instant_model import (
    INSTANT_API_KEY_ENV,
    instant_model,
    write_instant_config,
)
from tests.support.openai_server import OpenAITestServer
from tests.support.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

CODEC = EventCodec(PUBLIC_EVENTS)
BUSINESS = "personalized_push"
TURNS = 50
ASSIGNED = re.compile(r"Setting newly assigned partitions \{(.*)\} for group relaychain\.memory")


@pytest.fixture
def memory_workers(
    tmp_path: Path, kafka_bootstrap: str, postgres_dsn: str
) -> Iterator[tuple[WorkerPool, list[WorkerProcess]]]:
    # The memory agent never calls the model for `memory.save`; the server only gives the config a model.
    with OpenAITestServer() as server:
        config = write_instant_config(tmp_path, server.base_url, [BUSINESS])
        create_relaychain_topics(kafka_bootstrap)
        env = {
            "RELAYCHAIN_CONFIG": str(config),
            "RELAYCHAIN_DATA_DIR": str(tmp_path / "data"),
            "RELAYCHAIN_POSTGRES_DSN": postgres_dsn,
            INSTANT_API_KEY_ENV: "test",
        }
        pool = WorkerPool(tmp_path, kafka_bootstrap, env)
        workers = [pool.start("memory", name=f"memory-{n}") for n in (1, 2)]
        try:
            pool.wait_running(workers)
            yield pool, workers
        finally:
            exits = pool.stop_all()
    assert all(code == 0 for code in exits.values()), exits


def assignment(worker: WorkerProcess) -> set[int]:
    """The partitions of the memory inbox the worker owns now (its newest assignment in the log)."""
    found = ASSIGNED.findall(worker.output())
    return {int(p) for p in re.findall(r"partition=(\d+)", found[-1])} if found else set()


def conversation_on(partitions: set[int], count: int) -> str:
    """A conversation id whose key the producer's default partitioner puts on one of `partitions`."""
    partitioner = DefaultPartitioner()
    every = list(range(count))
    while True:
        conversation = f"conv-{uuid.uuid4().hex[:10]}"
        if partitioner(conversation.encode(), every, every) in partitions:
            return conversation


def save_job(conversation: str, turn: int) -> Job:
    request = Request(
        business=BUSINESS,
        input=f"turn {turn}",
        conversation_id=conversation,
        vars={"user_name": "Ana", "interests": "hiking"},
    )
    return Job(
        request=request,
        request_id=request.request_id,
        conversation_id=conversation,
        business=BUSINESS,
        model=instant_model(BUSINESS),
        slip=("memory.save",),
        result={"title": f"answer {turn}", "body": f"the answer to turn {turn}"},
    )


async def test_two_memory_workers_keep_each_conversations_turns_in_order(
    memory_workers, kafka_bootstrap: str, postgres_dsn: str
) -> None:
    pool, workers = memory_workers
    partitions = next(spec.partitions for spec in topic_specs() if spec.name == topology.AGENT_INBOXES["memory"][0])
    await eventually(
        lambda: (
            all(assignment(w) for w in workers)
            and assignment(workers[0]) | assignment(workers[1]) == set(range(partitions))
        ),
        timeout=30,
    )
    first = conversation_on(assignment(workers[0]), partitions)
    second = conversation_on(assignment(workers[1]), partitions)

    jobs = {conversation: [save_job(conversation, turn) for turn in range(TURNS)] for conversation in (first, second)}
    bus = KafkaBus(KafkaSettings(bootstrap_servers=[kafka_bootstrap]))
    await bus.start()
    try:
        started = time.monotonic()
        for turn in range(TURNS):  # interleaved: first's turn n, second's turn n, ...
            await asyncio.gather(
                *(bus.publish(topology.AGENT_INBOXES["memory"][0], CODEC.encode(jobs[c][turn]), key=c) for c in jobs)
            )
    finally:
        await bus.stop()

    store = PostgresConversationStore(postgres_dsn)
    try:
        stored: dict[str, list[str]] = {}

        async def load() -> None:
            for conversation in jobs:
                stored[conversation] = [turn.user for turn in await store.load(conversation)]

        deadline = time.monotonic() + 60
        while True:
            await load()
            if all(len(turns) == TURNS for turns in stored.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        print(f"{2 * TURNS} turns saved in {time.monotonic() - started:.1f}s")
    finally:
        await store.close()
    for conversation in jobs:
        assert stored[conversation] == [f"turn {n}" for n in range(TURNS)], conversation

    # Each worker saved one conversation, all of it: the group split the partitions between them.
    assert pool.stop_all() == {"memory-1": 0, "memory-2": 0}
    for worker, conversation in zip(workers, (first, second), strict=True):
        handled = {
            span["attributes"]["relaychain.request.id"]
            for span in read_spans(pool.directory / f"traces-{worker.name}.jsonl")
        }
        assert handled == {job.request_id for job in jobs[conversation]}, worker.name
