"""The instant model behind the examples (product_review, ops_push, news_comment over the real `openai` SDK),
and the Kafka workers both examples talk to: the built-in agents in one process, the sentiment tagger in another."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.e2e.workers import WorkerPool, WorkerProcess, create_relaychain_topics
from tests.support import tansu
from tests.support.instant_model import INSTANT_API_KEY_ENV, script_instant_replies, write_instant_config
from tests.support.openai_server import OpenAITestServer

BUSINESSES = ("product_review", "ops_push", "news_comment")


@pytest.fixture(scope="session")
def instant_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as server:
        script_instant_replies(server, BUSINESSES)
        yield server


@pytest.fixture(scope="session")
def instant_config(tmp_path_factory: pytest.TempPathFactory, instant_server: OpenAITestServer) -> Iterator[Path]:
    """The instant config, with the sentiment step routed (`runtime.routes`) but on no slip yet."""
    directory = tmp_path_factory.mktemp("examples")
    config = write_instant_config(directory, instant_server.base_url, BUSINESSES)
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    raw.setdefault("runtime", {})["routes"] = {"sentiment": "relaychain.sentiment"}
    config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(INSTANT_API_KEY_ENV, "test")
        yield config


BUILTIN = ("router", "moderator", "memory", "tokenizer", "generator", "formatter")
TAGGER = ("examples.custom_agent:SentimentTagger", "--inbox", "relaychain.sentiment")


@dataclass
class KafkaWorkers:
    bootstrap: str
    config: Path
    pool: WorkerPool


@pytest.fixture(scope="session")
def example_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker of the examples' own: their workers join the fixed `relaychain.*` groups, which the end-to-end
    modules also use on the session's broker; Tansu kept re-balancing a group such a module had left."""
    broker = tansu.start(log_path=tmp_path_factory.mktemp("example-broker") / "tansu.log")
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_workers(
    tmp_path_factory: pytest.TempPathFactory, instant_config: Path, example_broker: str
) -> Iterator[KafkaWorkers]:
    """`relaychain worker` processes on a broker, reading a config with the tagger on product_review's slip."""
    kafka_bootstrap = example_broker
    directory = tmp_path_factory.mktemp("example-workers")
    raw = yaml.safe_load(instant_config.read_text(encoding="utf-8"))
    steps = raw["businesses"]["product_review"]["steps"]
    steps.insert(steps.index("budget"), "sentiment")
    config = instant_config.with_name("config-with-sentiment.yaml")
    config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    create_relaychain_topics(kafka_bootstrap)
    env = {"RELAYCHAIN_CONFIG": str(config), "RELAYCHAIN_DATA_DIR": str(directory / "data")}
    pool = WorkerPool(directory, kafka_bootstrap, env)
    workers = [_start(pool, "builtin", BUILTIN), _start(pool, "sentiment", TAGGER)]
    try:
        pool.wait_running(workers)
        yield KafkaWorkers(kafka_bootstrap, config, pool)
    finally:
        exits = pool.stop_all()
    assert all(code == 0 for code in exits.values()), exits


def _start(pool: WorkerPool, name: str, arguments: tuple[str, ...]) -> WorkerProcess:
    log = pool.directory / f"{name}.log"
    command = [sys.executable, "-m", "relaychain.cli", "worker", *arguments]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=pool.environment(name), stdout=out, stderr=subprocess.STDOUT)
    worker = WorkerProcess(name, process, log)
    pool.workers.append(worker)
    return worker
