"""The composition root: which bus, which stores, which model clients, and the agents built on them.

Agents receive their dependencies; this module is the one place that
chooses SQLite or PostgreSQL, the memory bus or Kafka, a local model or
an API. Dependencies are built lazily, so a worker that runs only the
router never loads a model.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from relaychain import topology
from relaychain.agents.prompts import PromptLibrary
from relaychain.bus.base import Bus, TopicSpec
from relaychain.bus.cancellation import CancelledRequests
from relaychain.bus.codec import EventCodec
from relaychain.bus.middleware import Middleware
from relaychain.bus.runtime import Agent, AgentRuntime, RetryPolicy, Routes
from relaychain.cancellation import CancelJobs, follow_cancellations
from relaychain.heap import tune_garbage_collector
from relaychain.observability import MetricsMiddleware, Telemetry, TracingMiddleware
from relaychain.schemas.envelope import Event
from relaychain.schemas.events import PUBLIC_EVENTS
from relaychain.settings import Settings

if TYPE_CHECKING:
    from relaychain.agents.llm import ModelFactory
    from relaychain.schemas.config import Provider

T = TypeVar("T")

ANSWER_TYPES = ("response", "error", "blocked", "cancelled")
SIDE_CHANNELS = frozenset({"usage"})


def make_codec() -> EventCodec:
    return EventCodec(PUBLIC_EVENTS)


def make_routes(overrides: dict[str, str] | None = None) -> Routes:
    type_topics = {t: topology.RESPONSES for t in ANSWER_TYPES} | {
        "usage": topology.USAGE,
        "token_delta": topology.TOKENS,
        "cancel": topology.CONTROL,
    }
    return Routes(
        type_topics=type_topics,
        step_topic=topology.step_topic,
        deadletter=topology.DEADLETTER,
        overrides=overrides or {},
        side_channels=SIDE_CHANNELS,
    )


def topic_specs(partitions: int = 8) -> list[TopicSpec]:
    short = {topology.TOKENS: {"retention.ms": str(topology.TOKENS_RETENTION_MS)}}
    return [TopicSpec(name, partitions=partitions, config=short.get(name, {})) for name in topology.ALL_TOPICS]


class Components:
    """Shared dependencies of the agents in one process, built on first use and closed together."""

    def __init__(
        self,
        settings: Settings,
        *,
        model_factories: Mapping[Provider, ModelFactory] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        """`model_factories` replace the default model clients per provider (an instant model in a benchmark);
        `telemetry` is where model calls' GenAI spans and metrics go (nowhere when unset)."""
        self.settings = settings
        self.model_factories = dict(model_factories or {})
        self.telemetry = telemetry
        self._exit = AsyncExitStack()
        self._cache: dict[str, Any] = {}
        self.cancelled = CancelledRequests()
        """Fed from the control topic once agents are hosted; the generator stops on it mid-generation."""
        self.emit: Callable[[Event], Awaitable[None]] | None = None
        """The runtime's publish, for events an agent sends while it works (token deltas)."""

    @cached_property
    def prompts(self) -> PromptLibrary:
        return PromptLibrary(self.settings.app, self.settings.config_dir)

    async def once(self, key: str, build: Callable[[], Awaitable[T]]) -> T:
        if key not in self._cache:
            self._cache[key] = await build()
        built: T = self._cache[key]
        return built

    def on_close(self, close: Callable[[], Awaitable[None]]) -> None:
        self._exit.push_async_callback(close)

    async def close(self) -> None:
        await self._exit.aclose()

    async def agent(self, name: str) -> Agent:
        from relaychain import wiring

        builder = wiring.BUILDERS.get(name)
        if builder is None:
            raise KeyError(f"unknown agent {name!r}; agents are {', '.join(topology.AGENTS)}")
        return await builder(self)


def make_runtime(
    bus: Bus,
    settings: Settings,
    telemetry: Telemetry,
    *,
    raise_errors: bool = False,
    cancelled: CancelledRequests | None = None,
) -> AgentRuntime:
    runtime_settings = settings.runtime
    retry = RetryPolicy(
        max_attempts=runtime_settings.retry_attempts,
        base_delay_s=runtime_settings.retry_base_delay_s,
        max_delay_s=runtime_settings.retry_max_delay_s,
    )
    middlewares: list[Middleware] = [TracingMiddleware(telemetry.tracer_provider)]
    if telemetry.metrics_enabled:
        # Recording into a meter nobody reads still costs a tenth of each hop.
        middlewares.append(MetricsMiddleware(telemetry.meter_provider))
    # Innermost: the user's hooks see what the agent emits before tracing and metrics do.
    middlewares += [_construct(path) for path in runtime_settings.middlewares]
    side_channel_retry = RetryPolicy(
        max_attempts=runtime_settings.side_channel_retry_attempts,
        base_delay_s=runtime_settings.side_channel_retry_base_delay_s,
        max_delay_s=runtime_settings.side_channel_retry_max_delay_s,
    )
    lost = telemetry.meter_provider.get_meter("relaychain").create_counter(
        "relaychain.side_channel.dead_lettered", description="Side-channel events (usage) dead-lettered, unbilled"
    )
    routes = make_routes(runtime_settings.routes)
    return AgentRuntime(
        bus,
        make_codec(),
        routes,
        middlewares=middlewares,
        retry=retry,
        side_channel_retry=side_channel_retry,
        max_event_bytes=runtime_settings.max_event_bytes,
        failure_publish_timeout_s=runtime_settings.failure_publish_timeout_s,
        on_side_channel_loss=lambda event, reason: lost.add(1, {"type": event.type, "reason": reason}),
        raise_errors=raise_errors,
        answer_instead=CancelJobs(cancelled or CancelledRequests()),
    )


async def host_agents(runtime: AgentRuntime, components: Components, names: list[str]) -> None:
    max_in_flight = components.settings.runtime.max_in_flight
    if isinstance(runtime.answer_instead, CancelJobs):
        components.cancelled = runtime.answer_instead.cancelled
        await follow_cancellations(runtime, components.cancelled)
    components.emit = runtime.emit
    # Built one by one (builders share the components' lazily opened stores), then warmed up and joined together:
    # the router's token counters, the generator's weights and the retriever's index load on threads at once.
    agents = {name: await components.agent(name) for name in names}
    joining = [
        asyncio.create_task(
            runtime.add(agent, topology.AGENT_INBOXES[name], group=topology.group_of(name), max_in_flight=max_in_flight)
        )
        for name, agent in agents.items()
    ]
    try:
        await asyncio.gather(*joining)
    except BaseException:
        for task in joining:
            task.cancel()
        await asyncio.gather(*joining, return_exceptions=True)
        raise
    if components.settings.runtime.tune_gc:
        tune_garbage_collector()


def _construct(path: str) -> Any:
    """An instance of the class named `module:Class`, built without arguments."""
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)()


async def host_custom_agent(
    runtime: AgentRuntime, settings: Settings, path: str, inboxes: list[str], group: str | None
) -> str:
    """Host a user's agent class given as `module:Class` (constructed without arguments)."""
    agent = _construct(path)
    await runtime.add(
        agent, inboxes, group=group or topology.group_of(agent.name), max_in_flight=settings.runtime.max_in_flight
    )
    return str(agent.name)
