"""Cancelling through the gateway: queued work is dropped, a running call is stopped, `supersede` cancels."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import yaml

from relaychain.settings import Settings, load_settings
from tests.gateway.conftest import RunningGateway, start_gateway, stop_gateway
from tests.support.instant_model import INSTANT_REPLIES, instant_model
from tests.support.openai_server import OpenAITestServer, Reply

MODEL = instant_model("product_review")
VARS = {"product": "Kettle", "rating": "4"}


def request(text: str, conversation: str) -> dict:
    return {"business": "product_review", "input": text, "vars": VARS, "conversation_id": conversation}


async def first_progress(http: httpx.AsyncClient, body: dict, seen: asyncio.Event, answers: list[dict]) -> None:
    """Stream `body`; set `seen` once its first step is done; append its answer."""
    async with http.stream("POST", "/v1/requests", json={**body, "stream": True}) as response:
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
                if event == "progress":
                    seen.set()
            elif line.startswith("data: ") and event == "answer":
                answers.append(json.loads(line.removeprefix("data: ")))


async def test_a_queued_request_is_dropped_before_it_reaches_the_model(gateway: RunningGateway) -> None:
    slow = Reply(text=INSTANT_REPLIES["product_review"], input_tokens=40, output_tokens=20, delay_s=1.0)
    gateway.model_server.script(MODEL, slow, Reply(text=INSTANT_REPLIES["product_review"]))
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        seen, answers = asyncio.Event(), []
        running = asyncio.create_task(first_progress(http, request("first", "c-queue"), seen, answers))
        await seen.wait()
        # Same conversation: the second request waits behind the first, in order.
        queued = asyncio.create_task(http.post("/v1/requests", json=request("second", "c-queue")))
        while (second_id := _id_of_second(gateway)) is None:
            await asyncio.sleep(0.01)
        cancelling = await http.delete(f"/v1/requests/{second_id}")
        assert cancelling.status_code == 202
        second = (await queued).json()
        await running
    assert answers[0]["type"] == "response"
    assert second["type"] == "cancelled" and second["reason"] == "cancelled"
    # The first call only: the cancelled request never cost a model call.
    assert gateway.model_server.attempts(MODEL) == 1


def _id_of_second(gateway: RunningGateway) -> str | None:
    """The id of the request whose input is `second`, once the gateway tracks it."""
    assert gateway.host.hub is not None
    for tracked in list(gateway.host.hub.answers._entries.values()):
        if tracked.request.input == "second":
            return tracked.request.request_id
    return None


async def test_supersede_cancels_the_conversation_request_in_flight(
    tmp_path: Path, model_server: OpenAITestServer, gateway_settings: Settings
) -> None:
    """`gateway_settings` writes the instant config that this test switches to `supersede`."""
    config = tmp_path / "config" / "config.yaml"
    raw = yaml.safe_load(config.read_text())
    raw["businesses"]["product_review"]["in_flight"] = "supersede"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    settings = load_settings(config, data_dir=tmp_path / "data", observability={"exporters": []})
    model_server.script(MODEL, Reply(text="{}", delay_s=30), Reply(text=INSTANT_REPLIES["product_review"]))
    running, task = await start_gateway(settings, model_server)
    try:
        async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
            seen, answers = asyncio.Event(), []
            first = asyncio.create_task(first_progress(http, request("first", "c-super"), seen, answers))
            while model_server.attempts(MODEL) < 1:
                await asyncio.sleep(0.01)
            started = asyncio.get_running_loop().time()
            second = (await http.post("/v1/requests", json=request("second", "c-super"))).json()
            await first
            elapsed = asyncio.get_running_loop().time() - started
    finally:
        await stop_gateway(task)
    assert answers[0]["type"] == "cancelled" and answers[0]["reason"] == "superseded"
    assert answers[0]["step"] == "generate"
    assert second["type"] == "response"
    assert elapsed < 10, "the slow call was stopped, not waited for"
