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


def test_costs_in_one_currency_convert_cny_rows_and_keep_usd_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAYCHAIN_DATA_DIR", str(tmp_path))

    async def setup() -> None:
        ledger = SqliteLedger(tmp_path / LEDGER_FILE)
        cny = StepUsage(
            step="generate",
            model="ernie-4.0-8k",
            input_tokens=10,
            output_tokens=1,
            input_cost=Decimal("100"),
            currency="CNY",
        )
        usd = StepUsage(step="generate", model="gpt-4o", input_tokens=10, output_tokens=1, input_cost=Decimal("1.5"))
        await ledger.record(Usage(business="weibo_regional", usage=cny))
        await ledger.record(Usage(business="ops_push", usage=usd))
        await ledger.close()

    asyncio.run(setup())
    runner = CliRunner()
    both = json.loads(runner.invoke(main, ["costs", "--json"]).stdout)
    assert {t["currency"]: t["cost"] for t in both["totals"]} == {"CNY": "100.00000000", "USD": "1.50000000"}

    converted = runner.invoke(main, ["costs", "--json", "--currency", "USD"])
    assert converted.exit_code == 0, converted.output
    [total] = json.loads(converted.stdout)["totals"]
    # 100 CNY at the shipped 0.1380 USD/CNY, plus 1.5 USD.
    assert total == {**total, "currency": "USD", "cost": "15.30000000", "calls": 2}

    table = runner.invoke(main, ["costs", "--currency", "usd"])
    assert table.exit_code == 0 and "15.30000000" in table.stdout

    missing = runner.invoke(main, ["costs", "--currency", "EUR"])
    assert missing.exit_code == 2
    assert "no exchange rate CNY/EUR" in missing.stderr or "no exchange rate USD/EUR" in missing.stderr
    # Stored amounts are untouched by a converted report.
    again = json.loads(runner.invoke(main, ["costs", "--json"]).stdout)
    assert again["totals"] == both["totals"]
