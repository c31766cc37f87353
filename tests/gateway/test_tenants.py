"""An API key's tenant travels on the envelope into spans and the ledger, and its daily budget is enforced."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from relaychain.cli import main
from relaychain.gateway import ApiKeys
from relaychain.observability import read_spans
from relaychain.settings import load_settings
from relaychain.stores import open_ledger
from tests.gateway.conftest import start_gateway, stop_gateway
from tests.support.openai_server import OpenAITestServer

REQUEST = {"business": "product_review", "input": "Boils fast", "vars": {"product": "Kettle", "rating": "4"}}


async def test_tenant_is_billed_traced_and_stopped_at_its_budget(
    tmp_path: Path, model_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch, gateway_settings: object
) -> None:
    """`gateway_settings` writes the instant config (and sets its API key variable) that this test extends."""
    config = tmp_path / "config" / "config.yaml"
    raw = yaml.safe_load(config.read_text())
    # One answer costs 0.00005 USD: the first request passes, the next one finds the budget spent.
    raw["tenants"] = {"acme": {"daily_budget": "0.00004", "currency": "USD"}}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    traces = tmp_path / "tenant-traces.jsonl"
    settings = load_settings(
        config,
        data_dir=tmp_path / "data",
        observability={"exporters": ["jsonl"], "jsonl_path": str(traces)},
    )
    running, task = await start_gateway(settings, model_server, keys=ApiKeys({"acme": "k-acme"}))
    acme = {"Authorization": "Bearer k-acme"}
    try:
        async with httpx.AsyncClient(base_url=running.url) as http:
            first = (await http.post("/v1/requests", json=REQUEST, headers=acme)).json()
            assert first["type"] == "response" and first["tenant"] == "acme"
            ledger = await open_ledger(settings)
            try:
                # Usage is recorded off the answer's path: wait for the row, not for a fixed time.
                async with asyncio.timeout(10):
                    while not (rows := await ledger.tenant_totals()):
                        await asyncio.sleep(0.02)
            finally:
                await ledger.close()
            assert [(r.tenant, r.calls, r.currency) for r in rows] == [("acme", 1, "USD")]
            second = await http.post("/v1/requests", json=REQUEST, headers=acme)
            assert second.status_code == 200 and second.json()["code"] == "tenant_budget_exhausted"
            openai_style = await http.post(
                "/v1/chat/completions",
                json={
                    "model": "product_review",
                    "messages": [{"role": "user", "content": "hi"}],
                    "vars": REQUEST["vars"],
                },
                headers=acme,
            )
            assert (openai_style.status_code, openai_style.json()["error"]["code"]) == (429, "tenant_budget_exhausted")
            other = await http.get(f"/v1/requests/{first['request_id']}", headers={"Authorization": "Bearer nope"})
            assert other.status_code == 401
    finally:
        await stop_gateway(task)

    tenant_spans = [
        s for s in read_spans(traces) if s["attributes"].get("relaychain.request.id") == first["request_id"]
    ]
    assert tenant_spans and all(s["attributes"].get("relaychain.tenant") == "acme" for s in tenant_spans)
    monkeypatch.setenv("RELAYCHAIN_CONFIG", str(config))
    monkeypatch.setenv("RELAYCHAIN_DATA_DIR", str(tmp_path / "data"))
    table = await asyncio.to_thread(CliRunner().invoke, main, ["costs", "--by", "tenant"])
    assert table.exit_code == 0, table.output
    assert "acme" in table.output and "0.00005000" in table.output
