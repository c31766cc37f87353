"""The agent runtime: hosts agents on a bus and does everything that is not their job.

For each message an agent's group receives, the runtime decodes it (an
undecodable one goes to the dead-letter topic with the reason, and its caller
gets an `Error` when the bytes name a request), skips event ids it has
already handled, answers expired work with `deadline_exceeded`, calls the
agent with retries and jittered exponential backoff on retryable errors,
gives every emitted event an id derived from the input's (so a re-run after a
crash emits the same ids and downstream consumers drop the copies), checks
each output's size, publishes it to the topic its type or its slip names
(retrying transient broker errors), and only then returns, which
acknowledges the input to the bus.

Whatever fails on the way -- the agent, routing, encoding, a size limit,
publishing, a middleware -- ends the same way: the caller gets a typed
`Error` and the input goes to the dead-letter topic with the reason, then the
input is acknowledged. Side-channel events (usage) never answer the caller:
they are retried longer, then dead-lettered and reported to
`on_side_channel_loss`. Publishing that failure is itself retried for
`failure_publish_timeout_s`; only if the broker refuses it that long does the
runtime raise, and the bus redelivers the input.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from relaychain.bus.base import Bus, BusError, Message, Subscription
from relaychain.bus.cancellation import AnswerInstead
from relaychain.bus.codec import CONTENT_TYPE, EventCodec, RecentEvents, UndecodableMessage, lenient_fields
from relaychain.bus.errors import AgentError
from relaychain.bus.middleware import HandleContext, Middleware, chain_consume, chain_publish, split_consume
from relaychain.bus.together import settle
from relaychain.schemas.envelope import DeadLetter, Error, Event, derived_id, utc_now
from relaychain.schemas.errors import ErrorCode

log = logging.getLogger(__name__)

EVENT_TYPE_HEADER = "event-type"


DEFAULT_MAX_EVENT_BYTES = 900 * 1024
"""Below Kafka's default `message.max.bytes` (1 MB) with room for the record's headers and framing."""


class Agent(Protocol):
    """`handle` is the agent's job. An agent may also define `async def warm_up()` (load models and
    indexes): the runtime awaits it before the agent joins its group, so readiness waits for it."""

    name: str

    async def handle(self, event: Event) -> Sequence[Event]: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts include the first call; delays grow as base * 2^n, capped, with equal jitter
    (between half and all of the step), so a run of retries lasts at least half its nominal time.
    A server's `retry_after_s` hint is honoured, up to the cap."""

    max_attempts: int = 4
    base_delay_s: float = 0.2
    max_delay_s: float = 10.0

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        step = min(self.max_delay_s, self.base_delay_s * 2**attempt)
        jittered = random.uniform(step / 2, step)
        if retry_after_s is None:
            return jittered
        return max(jittered, min(retry_after_s, self.max_delay_s))


SIDE_CHANNEL_RETRY = RetryPolicy(max_attempts=8, base_delay_s=0.5, max_delay_s=15.0)
"""Long enough to ride out a database locked for several seconds (the delays add up to 23-46 s)."""


@dataclass(frozen=True)
class Routes:
    """Where emitted events go: by type for answers and side channels, else by the next step on the slip."""

    type_topics: Mapping[str, str]
    step_topic: Callable[[str], str]
    deadletter: str
    overrides: Mapping[str, str] = field(default_factory=dict)
    """Event type or step name -> topic; wins over the rules above (custom agents and steps)."""
    side_channels: frozenset[str] = frozenset()
    """Event types off the caller's path (usage): their failures never answer the caller."""

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


@dataclass(frozen=True)
class _Failure:
    """Why an input could not be handled: `code` for the caller's `Error`, `reason` for the dead letter."""

    code: str
    message: str
    reason: str
    detail: str
    retryable: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    cause: Exception | None = None


class _Unpublishable(Exception):
    def __init__(self, failure: _Failure) -> None:
        super().__init__(failure.detail)
        self.failure = failure


class AgentRuntime:
    """Runs agents on one bus. `raise_errors=True` (tests) re-raises unexpected exceptions to the bus,
    which redelivers the message and, on the memory bus, makes `run_until_idle` raise."""

    def __init__(
        self,
        bus: Bus,
        codec: EventCodec,
        routes: Routes,
        *,
        middlewares: Sequence[Middleware] = (),
        retry: RetryPolicy = RetryPolicy(),
        side_channel_retry: RetryPolicy = SIDE_CHANNEL_RETRY,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        failure_publish_timeout_s: float = 60.0,
        on_side_channel_loss: Callable[[Event, str], None] | None = None,
        raise_errors: bool = False,
        answer_instead: AnswerInstead | None = None,
    ) -> None:
        """`answer_instead` drops events of cancelled requests (see `bus/cancellation.py`)."""
        self.bus = bus
        self.codec = codec
        self._recent = RecentEvents(codec)
        self.routes = routes
        self.retry = retry
        self.side_channel_retry = side_channel_retry
        self.max_event_bytes = max_event_bytes
        self.failure_publish_timeout_s = failure_publish_timeout_s
        self.raise_errors = raise_errors
        self._on_side_channel_loss = on_side_channel_loss
        self.answer_instead = answer_instead
        self._middlewares = tuple(middlewares)
        self._consume_hooks, self._inner_middlewares = split_consume(self._middlewares)
        self._publish = chain_publish(self._middlewares, self._publish_to_bus)
        self._subscriptions: list[Subscription] = []

    @property
    def ready(self) -> bool:
        """Broker reachable, every agent warmed up and a running member of its group (the readiness rule).

        A member with no partitions (more replicas than partitions) is ready too: it is up and takes
        partitions over the moment another member leaves, and the startup probe must not restart it.
        """
        return self.bus.connected and bool(self._subscriptions) and self.live

    @property
    def live(self) -> bool:
        """False once a member stopped consuming because a message failed every delivery."""
        return all(s.failure is None for s in self._subscriptions)

    async def add(self, agent: Agent, topics: Sequence[str], *, group: str, max_in_flight: int = 64) -> Subscription:
        """Warm the agent up (models, indexes), then join `group`: no message waits on a first-use load."""
        warm_up = getattr(agent, "warm_up", None)
        if warm_up is not None and inspect.iscoroutinefunction(warm_up):
            await warm_up()
        handle = functools.partial(self._handle, agent, group, SeenIds())
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
            event = self._recent.take(message.value) or self.codec.decode(message.value)
        except UndecodableMessage as exc:
            unreadable = exc
            ctx.outcome = "dead_lettered"
            ctx.error_code = exc.reason
            await chain_consume(self._middlewares, ctx, lambda: self._reject(agent, message, unreadable))()
            return
        if event.id in seen:
            return
        ctx.event = event
        finished: list[bool] = []

        async def process() -> None:
            # Cancellation hook: queued work of a cancelled request is answered, not handled.
            instead = self.answer_instead.answer_instead(event) if self.answer_instead is not None else None
            if instead is None:
                await self._process(agent, event, ctx)
            else:
                ctx.outcome = "cancelled"
                ctx.emitted = [instead]
                await self._publish_with_retries(
                    [self._output(instead, derived_id(event.id, "cancelled"))], self.retry, ctx
                )
            finished.append(True)

        hooks = self._consume_hooks
        try:
            # The outermost middleware's hooks, when it has them, are called here rather than through a coroutine.
            token = hooks.enter(ctx) if hooks is not None else None
            try:
                await chain_consume(self._inner_middlewares, ctx, process)()
            finally:
                if hooks is not None:
                    hooks.exit(token, ctx)
        except Exception as exc:
            if finished:
                # The outputs (or the failure answer) are on the broker; only a hook after them failed.
                log.error("a consume middleware failed after %s handled event %s: %r", agent.name, event.id, exc)
            elif self.raise_errors or isinstance(exc, BusError):
                raise
            else:
                log.error("a consume middleware failed before %s handled event %s: %r", agent.name, event.id, exc)
                failure = _Failure(
                    ErrorCode.INTERNAL_ERROR,
                    f"{type(exc).__name__} around {agent.name}",
                    ErrorCode.MIDDLEWARE_FAILED,
                    repr(exc),
                )
                await self._fail(agent, event, ctx, failure)
        seen.add(event.id)

    async def _process(self, agent: Agent, event: Event, ctx: HandleContext) -> None:
        side = event.type in self.routes.side_channels
        # An agent may bring its own policy (`relaychain.Agent.retry`); the runtime's applies otherwise.
        policy = self.side_channel_retry if side else (getattr(agent, "retry", None) or self.retry)
        result = await self._call_with_retries(agent, event, ctx, policy, side=side)
        if isinstance(result, _Failure):
            await self._fail(agent, event, ctx, result)
            return
        ids = [derived_id(event.id, f"{agent.name}/{index}") for index in range(len(result))]
        outputs: list[Message] = []
        failure: _Failure | None = None
        for output, output_id in zip(result, ids, strict=True):
            try:
                outputs.append(self._output(output, output_id))
            except _Unpublishable as exc:
                failure = failure or exc.failure
        if failure is not None:
            # What was paid for is still billed: side-channel outputs go; the rest is answered as failed.
            outputs = [m for m in outputs if m.headers[EVENT_TYPE_HEADER] in self.routes.side_channels]
        ctx.emitted = [e for e in result if failure is None or e.type in self.routes.side_channels]
        try:
            await self._publish_with_retries(outputs, policy, ctx)
        except _Unpublishable as exc:
            failure = failure or exc.failure
            ctx.emitted = []
        if failure is not None:
            await self._fail(agent, event, ctx, failure)

    async def _call_with_retries(
        self, agent: Agent, event: Event, ctx: HandleContext, policy: RetryPolicy, *, side: bool
    ) -> Sequence[Event] | _Failure:
        attempt = 0
        while True:
            if not side and event.deadline is not None and utc_now() >= event.deadline:
                ctx.outcome = "error"
                ctx.error_code = ErrorCode.DEADLINE_EXCEEDED
                message = f"the request's deadline {event.deadline.isoformat()} passed before {agent.name} ran"
                return [self._error(agent, event, ErrorCode.DEADLINE_EXCEEDED, message, retryable=False)]
            ctx.attempts = attempt + 1
            try:
                return await agent.handle(event)
            except AgentError as exc:
                ctx.error_code = exc.code
                retryable = exc.retryable or side
                if retryable and attempt + 1 < policy.max_attempts:
                    ctx.outcome = "retried"
                    await asyncio.sleep(policy.delay(attempt, getattr(exc, "retry_after_s", None)))
                    attempt += 1
                    continue
                if not retryable:
                    ctx.outcome = "error"
                    return [self._error(agent, event, exc.code, exc.message, retryable=False, details=exc.details)]
                return _Failure(
                    exc.code,
                    exc.message,
                    ErrorCode.RETRIES_EXHAUSTED,
                    f"{exc.code}: {exc.message}",
                    retryable=True,
                    details=exc.details,
                )
            except Exception as exc:
                if self.raise_errors:
                    raise
                # A crash is treated as a redelivery would treat it: tried again, then answered and dead-lettered.
                log.warning("%s raised on %s event %s (attempt %d): %r", agent.name, event.type, event.id, attempt, exc)
                ctx.error_code = ErrorCode.INTERNAL_ERROR
                if attempt + 1 < policy.max_attempts:
                    ctx.outcome = "retried"
                    await asyncio.sleep(policy.delay(attempt))
                    attempt += 1
                    continue
                return _Failure(
                    ErrorCode.INTERNAL_ERROR,
                    f"{type(exc).__name__} in {agent.name}",
                    ErrorCode.HANDLER_CRASHED,
                    repr(exc),
                )

    def _output(self, event: Event, event_id: str) -> Message:
        """The message for one output; a failure here is final (retrying cannot make it routable or smaller)."""
        try:
            message = self._message(event, event_id)
        except LookupError as exc:
            if self.raise_errors:
                raise  # in tests an output with nowhere to go is a bug to see, not an answer
            failure = _Failure(ErrorCode.UNROUTABLE, str(exc), ErrorCode.UNROUTABLE, str(exc), cause=exc)
            raise _Unpublishable(failure) from None
        except (TypeError, ValueError) as exc:
            if self.raise_errors:
                raise
            detail = f"{event.type} event could not be encoded: {exc}"
            failure = _Failure(ErrorCode.ENCODING_FAILED, detail, ErrorCode.ENCODING_FAILED, detail, cause=exc)
            raise _Unpublishable(failure) from None
        if len(message.value) > self.max_event_bytes:
            detail = (
                f"{event.type} event for {message.topic} is {len(message.value)} bytes, "
                f"over the {self.max_event_bytes}-byte limit"
            )
            raise _Unpublishable(_Failure(ErrorCode.EVENT_TOO_LARGE, detail, ErrorCode.EVENT_TOO_LARGE, detail))
        return message

    async def _publish_with_retries(self, messages: Sequence[Message], policy: RetryPolicy, ctx: HandleContext) -> None:
        """Publish concurrently (a broker acknowledges them together); retry only what failed transiently."""
        pending = list(messages)
        attempt = 0
        while pending:
            failed = await self._publish_each(pending)
            if not failed:
                return
            first = failed[0][1]
            transient = all(isinstance(e, BusError) and e.retryable for _, e in failed)
            if not transient or attempt + 1 >= policy.max_attempts:
                detail = f"publishing to {failed[0][0].topic} failed after {attempt + 1} attempts: {first}"
                raise _Unpublishable(
                    _Failure(ErrorCode.PUBLISH_FAILED, detail, ErrorCode.PUBLISH_FAILED, detail, retryable=transient)
                )
            ctx.outcome = "retried"
            ctx.error_code = ErrorCode.PUBLISH_FAILED
            await asyncio.sleep(policy.delay(attempt))
            attempt += 1
            pending = [m for m, _ in failed]

    async def _publish_each(self, messages: Sequence[Message]) -> list[tuple[Message, Exception]]:
        """Publish all, concurrently when there are several (in this task: see `settle`); return the ones that
        failed with why."""
        if len(messages) == 1:
            try:
                await self._publish(messages[0])
            except Exception as exc:
                return [(messages[0], exc)]
            return []
        results = await settle([self._publish_alone(m) for m in messages])
        return [(m, result) for m, result in zip(messages, results, strict=True) if isinstance(result, Exception)]

    async def _publish_alone(self, message: Message) -> None:
        # A coroutine of its own: a plain publish hook (`Middleware.publish`) that raises as it is called fails this
        # message only, after the others' publishes have begun.
        await self._publish(message)

    async def _fail(self, agent: Agent, event: Event, ctx: HandleContext, failure: _Failure) -> None:
        """Answer the caller with a typed `Error` (not for side channels) and dead-letter the input."""
        side = event.type in self.routes.side_channels
        ctx.outcome = "dead_lettered"
        ctx.error_code = failure.code
        ctx.error = failure.cause
        events: list[Event] = []
        if not side:
            events.append(
                self._error(
                    agent, event, failure.code, failure.message, retryable=failure.retryable, details=failure.details
                )
            )
        events.append(self._dead_letter(agent, ctx.message, failure.reason, failure.detail))
        ctx.emitted = [*ctx.emitted, *events]
        ids = [derived_id(event.id, f"{agent.name}/failed/{index}") for index in range(len(events))]
        await self._publish_failure(events, ids)
        if side:
            log.error(
                "%s event %s could not be handled by %s and was dead-lettered (%s): %s",
                event.type,
                event.id,
                agent.name,
                failure.reason,
                failure.detail,
            )
            if self._on_side_channel_loss is not None:
                self._on_side_channel_loss(event, failure.reason)

    async def _reject(self, agent: Agent, message: Message, exc: UndecodableMessage) -> None:
        """Dead-letter what cannot be read; answer the caller too when the message names its request."""
        log.warning("dead-lettering message on %s: %s", message.topic, exc)
        letter = self._dead_letter(agent, message, exc.reason, exc.detail)
        raw = exc.raw if exc.raw is not None else lenient_fields(message.value)
        identity = self._message_identity(message)
        events: list[Event] = [letter]
        ids = [derived_id(identity, agent.name)]
        request_id = raw.get("request_id")
        side = raw.get("type") in self.routes.side_channels
        if isinstance(request_id, str) and raw.get("type") not in ("error", "dead_letter") and not side:
            conversation_id, business = raw.get("conversation_id"), raw.get("business")
            answer = Error(
                request_id=request_id,
                conversation_id=conversation_id if isinstance(conversation_id, str) else None,
                business=business if isinstance(business, str) else "",
                code=exc.reason,
                message=f"{agent.name} could not read the event: {exc.detail[:500]}",
                agent=agent.name,
            )
            events.append(answer)
            ids.append(derived_id(identity, "answer"))
        await self._publish_failure(events, ids)

    async def _publish_failure(self, events: Sequence[Event], ids: Sequence[str]) -> None:
        """Publish the answer and dead letter of a failure, retrying whatever goes wrong for a bounded time.

        Raising from here leaves the input unacknowledged: the bus redelivers it,
        and a Kafka member that cannot get rid of it stops rather than commit past it.
        """
        messages = [self._message(e, i) for e, i in zip(events, ids, strict=True)]
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.failure_publish_timeout_s
        attempt = 0
        pending = messages
        while True:
            failed = await self._publish_each(pending)
            if not failed:
                return
            delay = self.retry.delay(min(attempt, 16))
            if loop.time() + delay > give_up_at:
                raise BusError(
                    f"could not publish a failure answer to {failed[0][0].topic} "
                    f"for {self.failure_publish_timeout_s:g}s: {failed[0][1]!r}",
                    retryable=True,
                )
            log.warning("publishing a failure answer to %s failed, retrying: %r", failed[0][0].topic, failed[0][1])
            await asyncio.sleep(delay)
            attempt += 1
            pending = [m for m, _ in failed]

    @staticmethod
    def _message_identity(message: Message) -> str:
        return f"{message.topic}/{message.partition}/{message.offset}"

    def _error(
        self,
        agent: Agent,
        event: Event,
        code: str,
        message: str,
        *,
        retryable: bool,
        details: dict[str, Any] | None = None,
    ) -> Error:
        return event.reply(
            Error,
            code=code,
            message=message[:2000],
            agent=agent.name,
            step=event.current_step,
            retryable=retryable,
            details=details or {},
            attempt=event.attempt,
        )

    def _dead_letter(self, agent: Agent, message: Message, reason: str, error: str) -> DeadLetter:
        """The input kept whole, unless that would outgrow the event size limit: then its head is kept."""
        original = message.value.decode("utf-8", errors="replace")
        letter = self._letter(agent, message, reason, error, original)
        # JSON escaping can grow text up to six times; halve until the letter fits.
        while len(self.codec.encode(letter)) > self.max_event_bytes and original:
            original = original[: len(original) // 2]
            note = f"{error} (original truncated from {len(message.value)} bytes)"
            letter = self._letter(agent, message, reason, note, original)
        return letter

    @staticmethod
    def _letter(agent: Agent, message: Message, reason: str, error: str, original: str) -> DeadLetter:
        return DeadLetter(
            reason=reason,
            error=error[:10_000],
            agent=agent.name,
            source_topic=message.topic,
            source_partition=message.partition,
            source_offset=message.offset,
            original=original,
            original_headers=dict(message.headers),
        )

    def _message(self, event: Event, event_id: str | None = None) -> Message:
        topic = self.routes.deadletter if isinstance(event, DeadLetter) else self.routes.topic_for(event)
        headers = {EVENT_TYPE_HEADER: event.type, "content-type": CONTENT_TYPE}
        value = self.codec.encode(event, event_id=event_id)
        self._recent.keep(value, event, event_id)
        return Message(topic=topic, value=value, key=event.key, headers=headers)

    def _publish_to_bus(self, message: Message) -> Awaitable[None]:
        # Not a coroutine of its own: one frame less on every publish.
        return self.bus.publish(message.topic, message.value, key=message.key, headers=message.headers)
