"""`relaychain costs` says when usage is missing from its totals, and replays it on request."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from relaychain.agents.stores.ledger import SqliteLedger
from relaychain.agents.stores.unbilled import UNBILLED_FILE, UnbilledSpool
from relaychain.cli import main
from relaychain.schemas import StepUsage, Usage
from relaychain.stores import LEDGER_FILE


def usage(tokens: int) -> Usage:
    step = StepUsage(step="generate", model="gpt-4o", input_tokens=tokens, output_tokens=1, input_cost=Decimal("0.5"))
    return Usage(business="ops_push", usage=step)


def test_spooled_usage_is_warned_about_and_replayed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYCHAIN_DATA_DIR", str(tmp_path))
    billed, unbilled = usage(10), usage(20)

    async def setup() -> None:
        ledger = SqliteLedger(tmp_path / LEDGER_FILE)
        await ledger.record(billed)
        await ledger.close()
        spool = UnbilledSpool(tmp_path / UNBILLED_FILE)
        # A retry recorded `billed` after it had been spooled: replay must not count it twice.
        await spool.append(billed)
        await spool.append(unbilled)

    asyncio.run(setup())
    runner = CliRunner()
    warned = runner.invoke(main, ["costs", "--json"])
    assert warned.exit_code == 0, warned.output
    assert "2 usage event(s) could not be written to the ledger" in warned.stderr
    document = json.loads(warned.stdout)
    assert document["unbilled"] == 2 and document["totals"][0]["calls"] == 1

    replayed = runner.invoke(main, ["costs", "--json", "--replay-unbilled"])
    assert replayed.exit_code == 0, replayed.output
    assert "1 recorded, 1 already in the ledger" in replayed.stderr
    document = json.loads(replayed.stdout)
    assert document["unbilled"] == 0 and document["totals"][0]["calls"] == 2
    assert "could not be written" not in replayed.stderr
