"""Paid once, through the composition root: the wiring gives the generator its journal under the data dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaychain.agents.stores.ledger import SqliteLedger
from relaychain.embedded import EmbeddedApp
from relaychain.schemas import Request, Response
from relaychain.settings import load_settings
from relaychain.stores import LEDGER_FILE
from tests.support.instant_model import INSTANT_API_KEY_ENV, INSTANT_REPLIES, instant_model, write_instant_config
from tests.support.openai_server import OpenAITestServer, Reply


async def test_a_request_replayed_after_a_restart_pays_the_model_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A formatter re-ask is a new job and a new call; replaying the whole request after a restart
    (the same ids all the way down, as a redelivery gives) calls the model no more and bills nothing twice."""
    monkeypatch.setenv(INSTANT_API_KEY_ENV, "test")
    model = instant_model("ops_push")
    with OpenAITestServer() as server:
        server.script(model, Reply("not JSON at all"), Reply(INSTANT_REPLIES["ops_push"], input_tokens=40))
        settings = load_settings(write_instant_config(tmp_path, server.base_url, ["ops_push"]), data_dir=tmp_path / "d")
        request = Request(
            business="ops_push", input="20% off all kettles", vars={"campaign": "Double 11", "audience": "everyone"}
        )
        async with EmbeddedApp(settings, raise_errors=True) as app:
            first = await app.ask(request, timeout=60)
        assert isinstance(first, Response), first
        assert server.attempts(model) == 2 and [u.step for u in first.usage] == ["generate", "generate"]

        async with EmbeddedApp(settings, raise_errors=True) as restarted:
            again = await restarted.ask(request, timeout=60)
        assert server.attempts(model) == 2
        assert isinstance(again, Response) and again.output == first.output and again.usage == first.usage

    ledger = SqliteLedger(tmp_path / "d" / LEDGER_FILE)
    [row] = await ledger.totals()
    assert row.calls == 2
    await ledger.close()
