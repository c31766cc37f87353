"""What the gateway runs on: the agents in this process on `memory://`, else a client of the Kafka bus."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from relaychain import topology
from relaychain.app import Components, make_codec, topic_specs
from relaychain.bus.base import Bus
from relaychain.bus.client import Client
from relaychain.buses import make_bus
from relaychain.gateway.hub import RequestHub
from relaychain.gateway.keys import ApiKeys
from relaychain.observability import TracingMiddleware, setup_telemetry
from relaychain.settings import Settings


@dataclass(frozen=True)
class GatewayLimits:
    max_body_bytes: int = 1 << 20
    max_streams_per_key: int = 16
    answer_timeout_s: float = 600.0


@dataclass
class GatewayHost:
    """`async with GatewayHost(settings) as host:` starts the bus (and the agents, when embedded) and the hub."""

    settings: Settings
    keys: ApiKeys = field(default_factory=ApiKeys.from_environment)
    limits: GatewayLimits = field(default_factory=GatewayLimits)
    components: Components | None = None
    """Agents' dependencies when embedded (e.g. an instant model for a bench); built from settings otherwise."""

    def __post_init__(self) -> None:
        self._exit = AsyncExitStack()
        self.hub: RequestHub | None = None
        self.embedded = self.settings.bus.startswith("memory://")

    @property
    def trace_file(self) -> Path | None:
        """The span file the chat page reads trace trees from (embedded mode writes it)."""
        if not self.embedded:
            return None
        return Path(self.settings.observability.jsonl_path or self.settings.data_dir / "traces.jsonl")

    @property
    def ready(self) -> bool:
        if self.hub is None or not self.hub.ready:
            return False
        return not self.embedded or self._embedded_app.runtime.ready

    async def __aenter__(self) -> Self:
        bus: Bus
        if self.embedded:
            from relaychain.embedded import EmbeddedApp

            self._embedded_app = await self._exit.enter_async_context(
                EmbeddedApp(self.settings, components=self.components)
            )
            telemetry = self._embedded_app.telemetry
            bus, client = self._embedded_app.bus, self._embedded_app.client
        else:
            telemetry = setup_telemetry(
                self.settings.observability, jsonl_default=self.settings.data_dir / "traces.jsonl"
            )
            self._exit.callback(telemetry.shutdown)
            bus = make_bus(self.settings.bus, kafka_options=self.settings.kafka)
            await bus.start()
            self._exit.push_async_callback(bus.stop)
            if self.settings.runtime.create_topics:
                await bus.create_topics(topic_specs())
            client = Client(
                bus,
                make_codec(),
                requests_topic=topology.REQUESTS,
                answers_topic=topology.RESPONSES,
                middlewares=(TracingMiddleware(telemetry.tracer_provider),),
            )
            await client.start()
            self._exit.push_async_callback(client.stop)
        self.telemetry = telemetry
        hub = RequestHub(bus, make_codec(), client, middlewares=(TracingMiddleware(telemetry.tracer_provider),))
        await hub.start()
        self._exit.push_async_callback(hub.stop)
        self.hub = hub
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.hub = None
        await self._exit.aclose()
