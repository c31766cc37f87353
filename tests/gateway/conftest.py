"""A gateway on 127.0.0.1 (a free port) in the test's event loop: agents embedded, the instant model behind them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from relaychain.gateway import ApiKeys, GatewayHost, GatewayLimits
from relaychain.gateway.serve import listening_socket, serve
from relaychain.settings import Settings, load_settings
from tests.support.instant_model import INSTANT_API_KEY_ENV, script_instant_replies, write_instant_config
from tests.support.openai_server import OpenAITestServer

BUSINESSES = ("product_review", "ops_push")


@dataclass
class RunningGateway:
    url: str
    host: GatewayHost
    model_server: OpenAITestServer | None


@pytest.fixture
def model_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as server:
        script_instant_replies(server, BUSINESSES)
        yield server


@pytest.fixture
def gateway_settings(tmp_path: Path, model_server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv(INSTANT_API_KEY_ENV, "test")
    config = write_instant_config(tmp_path, model_server.base_url, BUSINESSES)
    return load_settings(
        config,
        data_dir=tmp_path / "data",
        observability={"exporters": ["jsonl"], "jsonl_path": str(tmp_path / "traces.jsonl")},
    )


async def start_gateway(
    settings: Settings,
    model_server: OpenAITestServer | None = None,
    *,
    keys: ApiKeys | None = None,
    limits: GatewayLimits | None = None,
) -> tuple[RunningGateway, asyncio.Task[None]]:
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    host = GatewayHost(settings, keys=keys or ApiKeys({}), limits=limits or GatewayLimits())
    task = asyncio.create_task(serve(host, bind="127.0.0.1", port=port, sock=sock))
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        while True:
            if task.done():
                task.result()
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.02)
    return RunningGateway(url, host, model_server), task


async def stop_gateway(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def gateway(gateway_settings: Settings, model_server: OpenAITestServer) -> AsyncIterator[RunningGateway]:
    running, task = await start_gateway(gateway_settings, model_server)
    yield running
    await stop_gateway(task)
