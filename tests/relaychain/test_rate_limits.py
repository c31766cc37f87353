"""Provider limits across replicas: four generator workers share one requests-per-minute limit through PostgreSQL.

The test server enforces the provider's limit itself (a token bucket answering
429 with `Retry-After` when a call comes early): the workers must never see a
429, and together they must still reach the configured rate.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
import yaml

from relaychain import topology
from relaychain.bus import Message
from relaychain.bus.codec import EventCodec
from relaychain.bus.kafka import KafkaBus, KafkaSettings
from relaychain.schemas import PUBLIC_EVENTS, Request, Response
from tests.e2e.workers import WorkerPool, create_relaychain_topics
from tests.faults.postgres import create_database
from tests.support.instant_model import (
    INSTANT_API_KEY_ENV,
    instant_model,
    script_instant_replies,
    write_instant_config,
)
from tests.support.openai_server import OpenAITestServer
from tests.support.waiting import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.timeout(300)]

CODEC = EventCodec(PUBLIC_EVENTS)
BUSINESS = "ops_push"
PER_MINUTE = 60
CALLS = 20


async def test_four_generators_share_the_limit_see_no_429_and_reach_the_rate(
    tmp_path: Path, kafka_bootstrap: str, postgres_dsn: str
) -> None:
    database = await create_database(postgres_dsn)
    model = instant_model(BUSINESS)
    with OpenAITestServer() as server:
        script_instant_replies(server, [BUSINESS])
        # The provider refills one call a second and absorbs 5 early arrivals (network and event-loop jitter);
        # relaychain is configured for one call a second. Without the limiter the 20 calls would come at once.
        server.limit(model, per_minute=PER_MINUTE, burst=5)
        config = write_instant_config(tmp_path, server.base_url, [BUSINESS])
        raw = yaml.safe_load(config.read_text())
        raw["models"][model]["limits"] = {"requests_per_minute": PER_MINUTE, "on_limit": "wait", "max_wait_s": 120}
        config.write_text(yaml.safe_dump(raw, sort_keys=False))
        await asyncio.to_thread(create_relaychain_topics, kafka_bootstrap)
        env = {
            "RELAYCHAIN_CONFIG": str(config),
            "RELAYCHAIN_DATA_DIR": str(tmp_path / "data"),
            "RELAYCHAIN_POSTGRES_DSN": database,
            # Calls wait their slot inside the handler (up to 20 s here): a rebalance while four generators join
            # must let them finish rather than hand their jobs to another member, which would call again.
            "RELAYCHAIN_KAFKA__REVOKE_TIMEOUT_S": "120",
            INSTANT_API_KEY_ENV: "test",
        }
        pool = WorkerPool(tmp_path, kafka_bootstrap, env)
        workers = [pool.start(agent) for agent in ("router", "moderator", "tokenizer", "formatter")]
        workers += [pool.start("generator", name=f"generator-{n}") for n in range(4)]
        bus = KafkaBus(KafkaSettings(bootstrap_servers=[kafka_bootstrap]))
        try:
            await asyncio.to_thread(pool.wait_running, workers, 180)
            await bus.start()
            answers: dict[str, object] = {}

            async def keep(message: Message) -> None:
                event = CODEC.decode(message.value)
                answers[event.request_id] = event

            await bus.subscribe([topology.RESPONSES], group=f"limits.{uuid.uuid4().hex[:8]}", handler=keep)
            requests = [
                Request(business=BUSINESS, input=f"Limit test {i}", vars={"campaign": "sale", "audience": "all"})
                for i in range(CALLS)
            ]
            started = time.monotonic()
            await asyncio.gather(*(bus.publish(topology.REQUESTS, CODEC.encode(r), key=r.key) for r in requests))
            await eventually(lambda: {r.request_id for r in requests} <= answers.keys(), timeout=120)
            elapsed = time.monotonic() - started
        finally:
            await bus.stop()
            exits = await asyncio.to_thread(pool.stop_all)
    assert all(isinstance(answers[r.request_id], Response) for r in requests), answers
    assert server.rejected(model) == 0, f"{server.rejected(model)} calls went over the provider's limit"
    served = [at for at, request in server.served_log() if request.model == model]
    prompts = [str(request.body["messages"])[-40:] for _, request in server.served_log()]
    assert len(served) == CALLS, (sorted(prompts), served)
    # The configured rate, reached: 20 calls one second apart span about 19 s, not much more.
    span = served[-1] - served[0]
    assert (CALLS - 1) * 60 / PER_MINUTE - 1.5 <= span <= (CALLS - 1) * 60 / PER_MINUTE + 4, span
    print(f"{CALLS} calls through 4 generators in {elapsed:.1f}s, served over {span:.1f}s, 0 x 429")
    assert not {name: code for name, code in exits.items() if code != 0}
