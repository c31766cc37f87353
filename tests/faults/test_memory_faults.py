"""The memory bus under a failure outside the agents: the embedded app with the instant model and 500 requests."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from relaychain import topology
from relaychain.embedded import EmbeddedApp
from relaychain.schemas import DeadLetter, Error, Response
from relaychain.settings import load_settings
from tests.faults import injection
from tests.faults.rig import BUSINESSES, REQUESTS, Outcome, Rig
from tests.support.instant_model import INSTANT_API_KEY_ENV, script_instant_replies, write_instant_config
from tests.support.openai_server import OpenAITestServer

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]


async def test_memory_bus_redelivers_a_failed_handling_and_dead_letters_a_hopeless_one(
    tmp_path: Path, record, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(INSTANT_API_KEY_ENV, "test")
    requests = Rig.requests(REQUESTS)
    once, always = requests[7], requests[11]
    monkeypatch.setattr(injection, "RAISE_ONCE", {once.request_id})
    monkeypatch.setattr(injection, "RAISE_ALWAYS", {always.request_id})
    with OpenAITestServer() as server:
        script_instant_replies(server, BUSINESSES)
        config = write_instant_config(tmp_path, server.base_url, BUSINESSES)
        settings = load_settings(
            config,
            data_dir=tmp_path / "data",
            runtime={"middlewares": ["tests.faults.injection:RaisingConsume"], "retry_base_delay_s": 0.01},
        )
        started = time.monotonic()
        async with EmbeddedApp(settings) as app:
            answers = await asyncio.gather(*(app.client.ask(r, timeout=60) for r in requests))
            # Returns (does not hang) once every message is acknowledged, the hopeless one included.
            await app.bus.run_until_idle(timeout=30)
            letters = [app.runtime.codec.decode(m.value) for m in app.bus.messages(topology.DEADLETTER)]
        seconds = time.monotonic() - started
    by_request = {a.request_id: a for a in answers}
    served = sum(server.served(f"instant-{b}") for b in BUSINESSES)
    outcome = Outcome(
        scenario="memory bus: one handling raises once, one always",
        requests=len(requests),
        answered=len(by_request),
        lost=len(requests) - len(by_request),
        duplicated=0,
        errors=sum(isinstance(a, Error) for a in answers),
        model_jobs=sum(isinstance(a, Response) for a in answers),
        ledger_rows=sum(isinstance(a, Response) for a in answers),
        model_calls=served,
        seconds=seconds,
        notes=[f"dead letters: {len(letters)}"],
    )
    record(outcome)
    assert isinstance(by_request[once.request_id], Response), by_request[once.request_id]
    hopeless = by_request[always.request_id]
    assert isinstance(hopeless, Error) and hopeless.agent == "router", hopeless
    assert [type(letter) for letter in letters] == [DeadLetter]
    assert always.request_id in letters[0].original
    assert outcome.errors == 1 and outcome.lost == 0 and outcome.double_paid == 0
