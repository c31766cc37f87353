"""`relaychain.App`: every agent in your process on the memory bus, yours among them.

    async with App(load_settings(), agents=[SentimentTagger()]) as app:
        answer = await app.ask(business="product_review", input="The lid is loose", vars={...})

Your agents' steps are routed to their inboxes for you; put the step in a
business's `steps` (in the config file, or with `insert_step`) and the router
writes it on that business's slips.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, Self

from relaychain import topology
from relaychain.agent import Agent
from relaychain.app import Components
from relaychain.client import Client, Progress
from relaychain.embedded import EmbeddedApp
from relaychain.observability import Telemetry
from relaychain.schemas.envelope import Event
from relaychain.schemas.events import Request
from relaychain.settings import Settings, load_settings

__all__ = ["App", "insert_step"]


class App:
    """The embedded application: the built-in agents named in `builtin`, plus `agents` of your own."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        agents: Sequence[Agent[Any]] = (),
        builtin: Sequence[str] = topology.AGENTS,
        telemetry: Telemetry | None = None,
        components: Components | None = None,
        raise_errors: bool = False,
    ) -> None:
        settings = settings or load_settings()
        self.custom_agents = list(agents)
        self.settings = _with_routes(settings, self.custom_agents)
        self._embedded = EmbeddedApp(
            self.settings, agents=builtin, telemetry=telemetry, components=components, raise_errors=raise_errors
        )
        self.bus = self._embedded.bus
        self.runtime = self._embedded.runtime
        self.client = Client(
            self.bus,
            codec=self.runtime.codec,
            tracer_provider=self._embedded.telemetry.tracer_provider,
            timeout=self.settings.runtime.answer_timeout_s,
            progress_topics=[agent.inbox[0] for agent in self.custom_agents],
        )

    async def __aenter__(self) -> Self:
        await self._embedded.__aenter__()
        try:
            for agent in self.custom_agents:
                await self.runtime.add(
                    agent, agent.inbox, group=agent.group, max_in_flight=self.settings.runtime.max_in_flight
                )
            await self.client.start()
        except BaseException:
            await self._embedded.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.client.stop()
        await self._embedded.__aexit__(exc_type, exc, tb)

    async def ask(self, request: Request | None = None, /, *, timeout: float | None = None, **fields: Any) -> Event:
        """The answer to one request, after the work that follows it (memory saves, the ledger) is done."""
        answer = await self.client.ask(request, timeout=timeout, **fields)
        await self.bus.run_until_idle(timeout=timeout or self.settings.runtime.answer_timeout_s)
        self._embedded.telemetry.flush()
        return answer

    async def submit(self, request: Request | None = None, /, **fields: Any) -> Any:
        """Publish without waiting: the returned future resolves with the answer (many requests in flight)."""
        return await self.client.submit(request, **fields)

    def stream(
        self, request: Request | None = None, /, *, timeout: float | None = None, **fields: Any
    ) -> AsyncIterator[Progress | Event]:
        return self.client.stream(request, timeout=timeout, **fields)

    async def run_until_idle(self, timeout: float = 30.0) -> None:
        """Wait until every agent has handled everything published so far."""
        await self.bus.run_until_idle(timeout=timeout)


def insert_step(settings: Settings, business: str, step: str, *, before: str) -> Settings:
    """`settings` with `step` on `business`'s slip just before the step `before` (the file stays as it is)."""
    config = settings.app.businesses.get(business)
    if config is None:
        raise KeyError(f"no business {business!r}; businesses are {', '.join(settings.app.businesses)}")
    if before not in config.steps:
        raise ValueError(f"business {business!r} has no step {before!r}; its steps are {list(config.steps)}")
    at = config.steps.index(before)
    steps = (*config.steps[:at], step, *config.steps[at:])
    businesses = {**settings.app.businesses, business: config.model_copy(update={"steps": steps})}
    return settings.model_copy(update={"app": settings.app.model_copy(update={"businesses": businesses})})


def _with_routes(settings: Settings, agents: Sequence[Agent[Any]]) -> Settings:
    """Route each agent's step to its inbox, unless the config routes it already."""
    routes = {agent.step: agent.inbox[0] for agent in agents} | dict(settings.runtime.routes)
    if routes == settings.runtime.routes:
        return settings
    return settings.model_copy(update={"runtime": settings.runtime.model_copy(update={"routes": routes})})
