"""A request's trace in a real trace UI: relaychain -> OTLP/HTTP -> Arize Phoenix -> Phoenix's REST API.

Phoenix runs from its own venv (`tests/support/phoenix.py`; the first run
installs it, about two minutes) on 127.0.0.1. The request goes through the
embedded app's agents on the memory bus to the instant model
(`tests/support/instant_model.py`: an `OpenAITestServer` over real HTTP).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from relaychain.embedded import EmbeddedApp
from relaychain.observability import ObservabilitySettings, setup_telemetry
from relaychain.schemas import Request, Response
from relaychain.settings import load_settings
from tests.support.instant_model import (
    INSTANT_API_KEY_ENV,
    instant_model,
    script_instant_replies,
    write_instant_config,
)
from tests.support.openai_server import OpenAITestServer
from tests.support.phoenix import PhoenixServer, is_loopback, start_phoenix

# Installing Phoenix on first use counts against the first test's time.
pytestmark = [pytest.mark.phoenix, pytest.mark.timeout(900)]

AGENTS = ("router", "moderator", "tokenizer", "generator", "formatter")
MODEL = instant_model("ops_push")
CLIENT_SPAN = "request ops_push"
# ops_push's slip, each hop consuming what the one before it published.
HOPS = (
    "router request",
    "moderator moderate.input",
    "tokenizer budget",
    "generator generate",
    "moderator moderate.output",
    "formatter format",
)


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PhoenixServer]:
    with start_phoenix(tmp_path_factory.mktemp("phoenix")) as server:
        yield server


def test_phoenix_grpc_receiver_still_takes_spans_on_loopback(phoenix: PhoenixServer, tmp_path: Path) -> None:
    project = f"relaychain-grpc-{uuid.uuid4().hex[:12]}"
    settings = ObservabilitySettings(
        exporters=("otlp-grpc",),
        otlp_endpoint=f"http://127.0.0.1:{phoenix.grpc_port}",
        resource_attributes={"openinference.project.name": project},
    )
    telemetry = setup_telemetry(settings, jsonl_default=tmp_path / "unused.jsonl")
    with telemetry.tracer_provider.get_tracer("test").start_as_current_span("over grpc"):
        pass
    telemetry.shutdown()

    assert [span["name"] for span in _wait_for_spans(phoenix, project, {"over grpc"})] == ["over grpc"]


async def test_a_request_reads_back_from_phoenix_as_one_linked_trace(
    phoenix: PhoenixServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = f"relaychain-test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv(INSTANT_API_KEY_ENV, "test")
    with OpenAITestServer() as model_server:
        script_instant_replies(model_server, ["ops_push"])  # 40 input, 20 output tokens
        settings = load_settings(
            write_instant_config(tmp_path, model_server.base_url, ["ops_push"]),
            data_dir=tmp_path / "data",
            observability={
                "exporters": ["otlp-http"],
                "otlp_endpoint": phoenix.url,
                "resource_attributes": {"openinference.project.name": project},
            },
        )
        request = Request(
            business="ops_push",
            input="A weekend sale on all outdoor gear",
            vars={"campaign": "Spring sale", "audience": "everyone"},
        )
        async with EmbeddedApp(settings, agents=AGENTS, raise_errors=True) as app:
            answer = await app.ask(request, timeout=60)
            app.telemetry.flush()
        app.telemetry.shutdown()

    assert isinstance(answer, Response), answer
    spans = _wait_for_spans(phoenix, project, {CLIENT_SPAN, *HOPS, "tokenizer usage"})
    by_name = {span["name"]: span for span in spans}

    assert len({span["context"]["trace_id"] for span in spans}) == 1, spans
    assert by_name[CLIENT_SPAN]["parent_id"] is None
    assert by_name[HOPS[0]]["parent_id"] == by_name[CLIENT_SPAN]["context"]["span_id"]
    for previous, hop in pairwise(HOPS):
        assert by_name[hop]["parent_id"] == by_name[previous]["context"]["span_id"], (previous, hop)
    # The usage line leaves the slip at the generator, for the cost ledger.
    assert by_name["tokenizer usage"]["parent_id"] == by_name["generator generate"]["context"]["span_id"]

    generate = by_name["generator generate"]["attributes"]
    assert generate["gen_ai.operation.name"] == "chat"
    assert generate["gen_ai.request.model"] == MODEL
    assert (generate["gen_ai.usage.input_tokens"], generate["gen_ai.usage.output_tokens"]) == (40, 20)
    assert by_name["router request"]["attributes"]["relaychain.request.id"] == request.request_id
    # Phoenix reads the GenAI attributes as an LLM call: that is what its UI shows model and tokens for.
    assert by_name["generator generate"]["span_kind"] == "LLM"


def test_phoenix_listens_on_loopback_only(phoenix: PhoenixServer) -> None:
    """Checked last, after Phoenix has taken spans over HTTP and gRPC, so lazily opened sockets count too."""
    addresses = phoenix.listening_addresses()
    assert f"127.0.0.1:{phoenix.port}" in addresses, addresses
    # The OTLP gRPC receiver still runs, re-bound from every interface to loopback.
    assert any(address.endswith(f":{phoenix.grpc_port}") for address in addresses), addresses
    assert [address for address in addresses if not is_loopback(address)] == []


def _wait_for_spans(
    phoenix: PhoenixServer, project: str, names: set[str], timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Phoenix accepts OTLP at once but inserts spans in batches: poll its REST API until all are there."""
    deadline = time.monotonic() + timeout
    while True:
        spans = phoenix.spans(project)
        if names <= {span["name"] for span in spans}:
            return spans
        if time.monotonic() > deadline:
            raise AssertionError(
                f"Phoenix has {sorted(s['name'] for s in spans)}, expected {sorted(names)} within {timeout:g}s"
            )
        time.sleep(0.2)
