"""The agent runtime: hosts agents on a bus and does everything that is not their job.

For each message an agent's group receives, the runtime decodes it (an
undecodable one goes to the dead-letter topic with the reason), skips event
ids it has already handled, calls the agent with retries and exponential
backoff on retryable errors, turns failures into typed `Error` answers (and
dead-letters the original once retries are exhausted), gives every emitted
event an id derived from the input's (so a re-run after a crash emits the
same ids and downstream consumers drop the copies), publishes it to the
topic its type or its slip names, and only then returns, which acknowledges
the input to the bus.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from relaychain.bus.base import Bus, Message, Subscription
from relaychain.bus.codec import CONTENT_TYPE, EventCodec, UndecodableMessage
from relaychain.bus.errors import AgentError
from relaychain.bus.middleware import HandleContext, Middleware, chain_consume, chain_publish
from relaychain.schemas.envelope import DeadLetter, Error, Event, derived_id
from relaychain.schemas.errors import ErrorCode

log = logging.getLogger(__name__)

EVENT_TYPE_HEADER = "event-type"


class Agent(Protocol):
    name: str

    async def handle(self, event: Event) -> Sequence[Event]: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts include the first call; delays grow as base * 2^n with full jitter, capped."""

    max_attempts: int = 4
    base_delay_s: float = 0.2
    max_delay_s: float = 10.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))


@dataclass(frozen=True)
class Routes:
    """Where emitted events go: by type for answers and side channels, else by the next step on the slip."""

    type_topics: Mapping[str, str]
    step_topic: Callable[[str], str]
    deadletter: str
    overrides: Mapping[str, str] = field(default_factory=dict)
    """Event type or step name -> topic; wins over the rules above (custom agents and steps)."""

    def topic_for(self, event: Event) -> str:
        topic = self.overrides.get(event.type) or self.type_topics.get(event.type)
        if topic is not None:
            return topic
        if event.slip:
            step = event.slip[0]
            return self.overrides.get(step) or self.step_topic(step)
        raise LookupError(f"{event.type} event has no topic for its type and no step left on its slip")


class SeenIds:
    """Bounded memory of handled event ids; a redelivered id is skipped, not re-emitted."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


class AgentRuntime:
    """Runs agents on one bus. `raise_errors=True` (tests) re-raises unexpected handler exceptions."""

    def __init__(
        self,
        bus: Bus,
        codec: EventCodec,
        routes: Routes,
        *,
        middlewares: Sequence[Middleware] = (),
        retry: RetryPolicy = RetryPolicy(),
        raise_errors: bool = False,
    ) -> None:
        self.bus = bus
        self.codec = codec
        self.routes = routes
        self.retry = retry
        self.raise_errors = raise_errors
        self._middlewares = tuple(middlewares)
        self._publish = chain_publish(self._middlewares, self._publish_to_bus)
        self._subscriptions: list[Subscription] = []

    @property
    def ready(self) -> bool:
        """Connected and owning at least one partition per subscription (the Kubernetes readiness rule)."""
        return self.bus.connected and all(s.assignment for s in self._subscriptions) and bool(self._subscriptions)

    async def add(self, agent: Agent, topics: Sequence[str], *, group: str, max_in_flight: int = 64) -> Subscription:
        seen = SeenIds()

        async def handle(message: Message) -> None:
            await self._handle(agent, group, seen, message)

        subscription = await self.bus.subscribe(topics, group=group, handler=handle, max_in_flight=max_in_flight)
        self._subscriptions.append(subscription)
        return subscription

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Stop fetching, finish in-flight work, commit, leave the groups."""
        subscriptions, self._subscriptions = self._subscriptions, []
        await asyncio.gather(*(s.stop(drain_timeout) for s in subscriptions))

    async def emit(self, event: Event) -> None:
        """Publish an event where the routes send it (used by publishers and tests)."""
        await self._publish(self._message(event))

    async def _handle(self, agent: Agent, group: str, seen: SeenIds, message: Message) -> None:
        ctx = HandleContext(agent=agent.name, group=group, message=message)
        try:
            event = self.codec.decode(message.value)
        except UndecodableMessage as exc:
            unreadable = exc
            ctx.outcome = "dead_lettered"
            ctx.error_code = exc.reason
            await chain_consume(self._middlewares, ctx, lambda: self._reject(agent, message, unreadable))()
            return
        if event.id in seen:
            return
        ctx.event = event
        await chain_consume(self._middlewares, ctx, lambda: self._process(agent, event, ctx))()
        seen.add(event.id)

    async def _process(self, agent: Agent, event: Event, ctx: HandleContext) -> None:
        outputs = list(await self._call_with_retries(agent, event, ctx))
        ctx.emitted = outputs
        ids = [derived_id(event.id, f"{agent.name}/{index}") for index in range(len(outputs))]
        await self._publish_all(outputs, ids)

    async def _call_with_retries(self, agent: Agent, event: Event, ctx: HandleContext) -> Sequence[Event]:
        # An agent may bring its own policy (`relaychain.Agent.retry`); the runtime's applies otherwise.
        retry: RetryPolicy = getattr(agent, "retry", None) or self.retry
        attempt = 0
        while True:
            ctx.attempts = attempt + 1
            try:
                return await agent.handle(event)
            except AgentError as exc:
                ctx.error_code = exc.code
                if exc.retryable and attempt + 1 < retry.max_attempts:
                    ctx.outcome = "retried"
                    await asyncio.sleep(retry.delay(attempt))
                    attempt += 1
                    continue
                ctx.outcome = "dead_lettered" if exc.retryable else "error"
                answer = self._error(agent, event, exc.code, exc.message, retryable=exc.retryable, details=exc.details)
                if not exc.retryable:
                    return [answer]
                return [
                    answer,
                    self._dead_letter(agent, ctx.message, ErrorCode.RETRIES_EXHAUSTED, f"{exc.code}: {exc.message}"),
                ]
            except Exception as exc:
                if self.raise_errors:
                    raise
                log.exception("agent %s crashed on %s event %s", agent.name, event.type, event.id)
                ctx.outcome = "dead_lettered"
                ctx.error_code = ErrorCode.INTERNAL_ERROR
                return [
                    self._error(
                        agent, event, ErrorCode.INTERNAL_ERROR, f"{type(exc).__name__} in {agent.name}", retryable=False
                    ),
                    self._dead_letter(agent, ctx.message, ErrorCode.HANDLER_CRASHED, repr(exc)),
                ]

    async def _reject(self, agent: Agent, message: Message, exc: UndecodableMessage) -> None:
        """Dead-letter what cannot be read; answer the caller too when the message names its request."""
        log.warning("dead-lettering message on %s: %s", message.topic, exc)
        letter = self._dead_letter(agent, message, exc.reason, exc.detail)
        raw = exc.raw or {}
        identity = self._message_identity(message)
        events: list[Event] = [letter]
        ids = [derived_id(identity, agent.name)]
        request_id = raw.get("request_id")
        if isinstance(request_id, str) and raw.get("type") not in ("error", "dead_letter"):
            answer = Error(
                request_id=request_id,
                conversation_id=raw.get("conversation_id") if isinstance(raw.get("conversation_id"), str) else None,
                business=raw.get("business") if isinstance(raw.get("business"), str) else "",
                code=exc.reason,
                message=f"{agent.name} could not read the event: {exc.detail[:500]}",
                agent=agent.name,
            )
            events.append(answer)
            ids.append(derived_id(identity, "answer"))
        await self._publish_all(events, ids)

    @staticmethod
    def _message_identity(message: Message) -> str:
        return f"{message.topic}/{message.partition}/{message.offset}"

    def _error(
        self, agent: Agent, event: Event, code: str, message: str, *, retryable: bool, details: dict | None = None
    ) -> Error:
        return event.reply(
            Error,
            code=code,
            message=message,
            agent=agent.name,
            step=event.current_step,
            retryable=retryable,
            details=details or {},
            attempt=event.attempt,
        )

    def _dead_letter(self, agent: Agent, message: Message, reason: str, error: str) -> DeadLetter:
        return DeadLetter(
            reason=reason,
            error=error,
            agent=agent.name,
            source_topic=message.topic,
            source_partition=message.partition,
            source_offset=message.offset,
            original=message.value.decode("utf-8", errors="replace"),
            original_headers=dict(message.headers),
        )

    def _message(self, event: Event, event_id: str | None = None) -> Message:
        topic = self.routes.deadletter if isinstance(event, DeadLetter) else self.routes.topic_for(event)
        headers = {EVENT_TYPE_HEADER: event.type, "content-type": CONTENT_TYPE}
        return Message(topic=topic, value=self.codec.encode(event, event_id=event_id), key=event.key, headers=headers)

    async def _publish_all(self, events: Sequence[Event], ids: Sequence[str]) -> None:
        """Publish each event under its derived id; concurrently, so a broker acknowledges them together."""
        if len(events) == 1:
            await self._publish(self._message(events[0], ids[0]))
        elif events:
            await asyncio.gather(*(self._publish(self._message(e, i)) for e, i in zip(events, ids, strict=True)))

    async def _publish_to_bus(self, message: Message) -> None:
        await self.bus.publish(message.topic, message.value, key=message.key, headers=message.headers)
