"""Cancelling a local-model generation halfway through the gateway (real SmolLM2 weights, llama.cpp)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from relaychain.gateway import ApiKeys
from relaychain.settings import load_settings
from tests.gateway.conftest import start_gateway, stop_gateway

pytestmark = pytest.mark.slow

MAX_TOKENS = 200
REQUEST = {
    "business": "news_comment",
    "input": "Write a long, detailed comment about the new metro line and everything it changes for the city.",
    "vars": {"headline": "City opens a new metro line"},
    "options": {"max_tokens": MAX_TOKENS},
    "stream": True,
}


@pytest.mark.timeout(600)
async def test_a_local_generation_cancelled_halfway_stops_and_bills_what_it_generated(
    smollm2_data_dir: Path, tmp_path: Path
) -> None:
    settings = load_settings(data_dir=smollm2_data_dir, observability={"exporters": []})
    running, task = await start_gateway(settings, keys=ApiKeys({}))
    try:
        async with (
            httpx.AsyncClient(base_url=running.url, timeout=600) as http,
            http.stream("POST", "/v1/requests", json=REQUEST) as response,
        ):
            request_id, deltas, event, answer = None, 0, None, None
            cancelled_at = 0.0
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                    continue
                if not line.startswith("data: "):
                    continue
                data = json.loads(line.removeprefix("data: "))
                if event == "request":
                    request_id = data["request_id"]
                elif event == "delta":
                    deltas += 1
                    if deltas == 2:
                        # Text is flowing: the generation is under way, far from its limit.
                        cancelled = await http.delete(f"/v1/requests/{request_id}")
                        assert cancelled.status_code == 202
                        cancelled_at = time.perf_counter()
                elif event == "answer":
                    answer = data
                    answered_at = time.perf_counter()
    finally:
        await stop_gateway(task)

    assert answer is not None and answer["type"] == "cancelled", answer
    assert answered_at - cancelled_at < 0.2, f"stopped {answered_at - cancelled_at:.3f}s after the cancel"
    [step] = answer["usage"]
    assert step["step"] == "generate" and 0 < step["output_tokens"] < MAX_TOKENS
