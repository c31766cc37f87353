"""`relaychain tokens` and `relaychain costs` through click, as a user runs them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from relaychain.agents.stores.ledger import SqliteLedger
from relaychain.commands.costs import costs
from relaychain.commands.tokens import tokens
from relaychain.schemas import StepUsage, Usage
from relaychain.stores import LEDGER_FILE

CONFIG = """
models:
  gpt-4o:
    provider: openai
    tokenizer: tiktoken:o200k_base
    context_window: 128000
    max_output_tokens: 16384
    price: {input_per_million: "2.50", output_per_million: "10.00", currency: USD}
  ernie-4.0-8k:
    provider: openai-compatible
    base_url: http://127.0.0.1:9/v2
    tokenizer: tiktoken:cl100k_base
    context_window: 8192
    max_output_tokens: 2048
    price: {input_per_million: "30.00", output_per_million: "90.00", currency: CNY}
businesses:
  chat:
    default_model: gpt-4o
    allowed_models: [gpt-4o, ernie-4.0-8k]
    templates: {default: chat.j2}
    output_schema: answer
    steps: [budget, generate]
output_schemas:
  answer: "relaychain.schemas.events:Response"
"""


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "chat.j2").write_text("{{ input }}", encoding="utf-8")
    (tmp_path / "config.yaml").write_text(CONFIG, encoding="utf-8")
    monkeypatch.setenv("RELAYCHAIN_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.setenv("RELAYCHAIN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("RELAYCHAIN_POSTGRES_DSN", raising=False)
    return tmp_path / "data"


def test_tokens_of_an_encoding_with_each_tokens_bytes() -> None:
    result = CliRunner().invoke(tokens, ["--encoding", "r50k_base", "算法工程师"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "ids: [163, 106, 245, 37345, 243, 32432, 98, 163, 101, 233, 30585, 230]" in lines
    assert "count: 12" in lines
    assert "163 -> b'\\xe7'" in lines
    assert "37345 -> b'\\xe6\\xb3'" in lines
    assert not any(line.startswith("input cost") for line in lines)


def test_tokens_english_under_r50k() -> None:
    result = CliRunner().invoke(tokens, ["--encoding", "r50k_base", "hello what's your name?"])
    assert result.exit_code == 0, result.output
    assert "ids: [31373, 644, 338, 534, 1438, 30]" in result.output
    assert "31373 -> b'hello'" in result.output
    assert "644 -> b' what'" in result.output


def test_tokens_of_a_model_with_its_input_cost(configured: Path) -> None:
    result = CliRunner().invoke(tokens, ["--model", "ernie-4.0-8k", "算法工程师"])
    assert result.exit_code == 0, result.output
    assert "ids: [70203, 25333, 49792, 39607, 13821, 230]" in result.output
    # 6 tokens at 30 CNY per million.
    assert "input cost: 0.00018000 CNY" in result.output


def test_tokens_needs_exactly_one_of_model_or_encoding(configured: Path) -> None:
    assert CliRunner().invoke(tokens, ["hi"]).exit_code == 2
    assert CliRunner().invoke(tokens, ["--model", "gpt-4o", "--encoding", "r50k_base", "hi"]).exit_code == 2
    unknown = CliRunner().invoke(tokens, ["--model", "gpt-9", "hi"])
    assert unknown.exit_code == 2 and "unknown model" in unknown.output


def test_costs_before_any_usage(configured: Path) -> None:
    result = CliRunner().invoke(costs, [])
    assert result.exit_code == 0, result.output
    assert "no usage recorded yet" in result.output


def test_costs_table_by_business_model_day_with_totals_per_currency(configured: Path) -> None:
    async def book() -> None:
        ledger = SqliteLedger(configured / LEDGER_FILE)
        at = datetime(2026, 3, 14, 9, tzinfo=UTC)
        for model, cost, currency in [
            ("gpt-4o", "0.0025", "USD"),
            ("gpt-4o", "0.0025", "USD"),
            ("ernie-4.0-8k", "0.03", "CNY"),
        ]:
            step = StepUsage(
                step="generate",
                model=model,
                input_tokens=1000,
                output_tokens=10,
                input_cost=Decimal(cost),
                output_cost=Decimal("0.0001"),
                currency=currency,
            )
            await ledger.record(Usage(business="chat", created_at=at, usage=step))
        await ledger.close()

    asyncio.run(book())
    result = CliRunner().invoke(costs, [])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()]
    assert ["2026-03-14", "chat", "gpt-4o", "2", "2000", "20", "0.00500000", "0.00020000", "0.00520000", "USD"] in rows
    assert [
        "2026-03-14",
        "chat",
        "ernie-4.0-8k",
        "1",
        "1000",
        "10",
        "0.03000000",
        "0.00010000",
        "0.03010000",
        "CNY",
    ] in rows
    assert ["total", "1", "1000", "10", "0.03000000", "0.00010000", "0.03010000", "CNY"] in rows
    assert ["total", "2", "2000", "20", "0.00500000", "0.00020000", "0.00520000", "USD"] in rows
    later = CliRunner().invoke(costs, ["--since", "2026-03-15"])
    assert "no usage recorded since 2026-03-15" in later.output
