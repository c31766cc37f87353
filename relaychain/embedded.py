"""All agents in one process on the memory bus: the embedded mode behind `relaychain run` and `chat`."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Self

from opentelemetry.trace import SpanKind

from relaychain import topology
from relaychain.app import Components, host_agents, make_codec, make_runtime
from relaychain.bus.client import Client
from relaychain.bus.memory import MemoryBus
from relaychain.observability import Telemetry, TracingMiddleware, setup_telemetry
from relaychain.schemas.envelope import Event
from relaychain.schemas.events import Request
from relaychain.settings import Settings


class EmbeddedApp:
    """`async with EmbeddedApp(settings) as app: answer = await app.ask(request)`."""

    def __init__(
        self,
        settings: Settings,
        *,
        agents: Sequence[str] = topology.AGENTS,
        telemetry: Telemetry | None = None,
        components: Components | None = None,
        raise_errors: bool = False,
    ) -> None:
        self.settings = settings
        self.agents = list(agents)
        self.telemetry = telemetry or setup_telemetry(
            settings.observability, jsonl_default=settings.data_dir / "traces.jsonl"
        )
        self.components = components or Components(settings, telemetry=self.telemetry)
        self.bus = MemoryBus()
        self.runtime = make_runtime(self.bus, settings, self.telemetry, raise_errors=raise_errors)
        self.client = Client(
            self.bus,
            make_codec(),
            requests_topic=topology.REQUESTS,
            answers_topic=topology.RESPONSES,
            middlewares=(TracingMiddleware(self.telemetry.tracer_provider),),
        )
        self._tracer = self.telemetry.tracer_provider.get_tracer("relaychain.client")

    async def __aenter__(self) -> Self:
        await self.bus.start()
        await host_agents(self.runtime, self.components, self.agents)
        await self.client.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.client.stop()
        await self.runtime.stop(self.settings.runtime.drain_timeout_s)
        await self.bus.stop()
        await self.components.close()
        self.telemetry.flush()

    async def ask(self, request: Request, *, timeout: float | None = None) -> Event:
        """Publish a request under a client span and wait for its answer and the work after it."""
        attributes = {"relaychain.request.id": request.request_id, "relaychain.business": request.business}
        with self._tracer.start_as_current_span(
            f"request {request.business}", kind=SpanKind.PRODUCER, attributes=attributes
        ):
            answer = await self.client.ask(request, timeout=timeout or self.settings.runtime.answer_timeout_s)
        await self.bus.run_until_idle(timeout=timeout or self.settings.runtime.answer_timeout_s)
        self.telemetry.flush()
        return answer
