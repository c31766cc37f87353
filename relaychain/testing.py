"""`relaychain.testing`: test your own agent on the real memory bus, with its failures raised in the test.

    async with AgentHarness(SentimentTagger()) as harness:
        [job] = await harness.publish(some_job)          # what the agent emitted for it
        with pytest.raises(AgentError):
            await harness.publish(bad_job)               # the agent's failure, raised here

Nothing is patched: the event is encoded, published to the agent's inbox on
a `MemoryBus`, consumed by the same `AgentRuntime` that hosts agents in
production (decoding, deduplication, retries with the agent's policy, error
answers, dead letters, routing of what it emits), and `publish` returns when
the bus is idle. With `raise_errors=False` it returns what production would
emit instead of raising: the `Error` answer (and the `DeadLetter`).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from relaychain.agent import Agent
from relaychain.app import make_codec, make_routes
from relaychain.bus.base import Message
from relaychain.bus.codec import CONTENT_TYPE
from relaychain.bus.memory import MemoryBus
from relaychain.bus.middleware import ConsumeNext, HandleContext, PublishNext
from relaychain.bus.runtime import EVENT_TYPE_HEADER, AgentRuntime, RetryPolicy
from relaychain.schemas.envelope import Event
from relaychain.settings import Settings

__all__ = ["AgentHarness"]


class AgentHarness:
    """Hosts one agent on a fresh memory bus; `publish` an event, get back what the agent emitted.

    `settings` supplies the routes of your steps (`runtime.routes`); `retry`
    replaces the agent's retry policy (a short one keeps retry tests fast).
    """

    def __init__(
        self, agent: Agent[Any], *, settings: Settings | None = None, retry: RetryPolicy | None = None
    ) -> None:
        self.agent = agent
        self.bus = MemoryBus()
        self._recorder = _Recorder()
        self._codec = make_codec()
        overrides = {agent.step: agent.inbox[0]} | dict(settings.runtime.routes if settings else {})
        self.runtime = AgentRuntime(
            self.bus,
            self._codec,
            make_routes(overrides),
            middlewares=(self._recorder,),
        )
        self._failures = _FailureRecorder(agent, retry)

    async def __aenter__(self) -> Self:
        await self.bus.start()
        await self.runtime.add(self._failures, self.agent.inbox, group=self.agent.group)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.runtime.stop(drain_timeout=5.0)
        await self.bus.stop()

    async def publish(self, event: Event, *, raise_errors: bool = True, timeout: float = 30.0) -> list[Event]:
        """Deliver `event` to the agent's inbox and return the events it emitted, in order.

        Raises the agent's exception (an `AgentError`, or the bug that crashed it) unless `raise_errors=False`,
        in which case the typed `Error` answer (and, for a crash or exhausted retries, the `DeadLetter`) is returned.
        """
        await self.bus.publish(
            self.agent.inbox[0],
            self._codec.encode(event),
            key=event.key,
            headers={EVENT_TYPE_HEADER: event.type, "content-type": CONTENT_TYPE},
        )
        await self.bus.run_until_idle(timeout=timeout)
        emitted = self._recorder.emitted.pop(event.id, [])
        crash = self._recorder.crashes.pop(event.id, None)
        failure = self._failures.raised.pop(event.id, None)
        if crash is not None:
            # Not the agent's failure but what came after it (an emitted step with no route): always a bug.
            raise crash
        if failure is not None and raise_errors:
            raise failure
        return emitted

    def published(self, topic: str) -> list[Event]:
        """Every event on `topic` so far (where the runtime routed what the agent emitted)."""
        return [self._codec.decode(message.value) for message in self.bus.messages(topic)]


class _FailureRecorder:
    """The agent as the runtime sees it, remembering the exception behind an `Error` answer."""

    def __init__(self, agent: Agent[Any], retry: RetryPolicy | None) -> None:
        self.name = agent.name
        self.retry = retry or agent.retry
        self._agent = agent
        self.raised: dict[str, Exception] = {}

    async def handle(self, event: Event) -> Sequence[Event]:
        try:
            emitted = await self._agent.handle(event)
        except Exception as exc:
            self.raised[event.id] = exc
            raise
        self.raised.pop(event.id, None)  # a retry that succeeded: the earlier failure is not the outcome
        return emitted


class _Recorder:
    """A middleware keeping what each consumed event led to: the emitted events, or the crash."""

    def __init__(self) -> None:
        self.emitted: dict[str, list[Event]] = {}
        self.crashes: dict[str, Exception] = {}

    async def consume(self, call_next: ConsumeNext, ctx: HandleContext) -> None:
        try:
            await call_next()
        except Exception as exc:
            # Kept from the bus, which would redeliver it forever; `publish` raises it in the test.
            if ctx.event is not None:
                self.crashes[ctx.event.id] = exc
            return
        else:
            # What came after the agent (an emitted step with no route) is answered in production; a bug here.
            if ctx.error is not None and ctx.event is not None:
                self.crashes[ctx.event.id] = ctx.error
        finally:
            if ctx.event is not None:
                self.emitted[ctx.event.id] = list(ctx.emitted)

    async def publish(self, call_next: PublishNext, message: Message) -> None:
        await call_next(message)
