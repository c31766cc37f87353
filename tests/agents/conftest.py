"""Fixtures for agent tests. Each section belongs to the issue named in its header; append, never remove."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.openai_server import OpenAITestServer

# --- model clients and generator (issue 3) ----------------------------------


@pytest.fixture
def openai_server() -> Iterator[OpenAITestServer]:
    """A fresh OpenAI-compatible server per test: scripts and recorded requests never leak between tests."""
    with OpenAITestServer() as server:
        yield server


@pytest.fixture(scope="session")
def smollm2_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where SmolLM2's safetensors cache goes: a session temp dir, so the first-load conversion is what gets tested."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return tmp_path_factory.mktemp("relaychain-data")
