"""Hooks around consuming and publishing; tracing and metrics plug in here, the bus stays ignorant of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar, runtime_checkable

from relaychain.bus.base import Message
from relaychain.schemas.envelope import Event


@dataclass(slots=True)
class HandleContext:
    """What a consume hook may know about the message being handled; `outcome` is set by the runtime."""

    agent: str
    group: str
    message: Message
    event: Event | None = None
    outcome: str = "ok"
    attempts: int = 0
    error_code: str | None = None
    error: Exception | None = None
    """The exception behind `error_code` when there is one (a test harness raises it in the test)."""
    emitted: list[Event] = field(default_factory=list)

    @property
    def step(self) -> str | None:
        return self.event.current_step if self.event is not None else None


ConsumeNext = Callable[[], Awaitable[None]]
PublishNext = Callable[[Message], Awaitable[None]]


class Middleware(Protocol):
    async def consume(self, call_next: ConsumeNext, ctx: HandleContext) -> None: ...

    def publish(self, call_next: PublishNext, message: Message) -> Awaitable[None]:
        """`message` was built for this one publish: when its `headers` is a dict, a middleware may add to it in
        place rather than copy the message (the buses copy headers as they take a message). An `async def`, or a
        plain method returning `call_next(message)` (no coroutine of its own) when nothing follows the publish."""
        ...


Token = TypeVar("Token")


@runtime_checkable
class ConsumeHooks(Protocol[Token]):
    """What a middleware that only acts before and after the rest of the consume chain may define besides
    `consume`: when it is the outermost middleware, the runtime calls `enter` and `exit` around the rest itself
    (`split_consume`), so no coroutine of the middleware's own, with its frame and await, runs on every hop.
    `exit` gets what `enter` returned and runs however the rest ended (`ctx.outcome` says how); the middleware's
    `consume` must do the same as the pair, for the chains that call it: `consume_with_hooks` does."""

    def enter(self, ctx: HandleContext) -> Token: ...

    def exit(self, token: Token, ctx: HandleContext) -> None: ...


async def consume_with_hooks(hooks: ConsumeHooks[Token], call_next: ConsumeNext, ctx: HandleContext) -> None:
    """The `consume` a middleware with hooks owes the chains that call it: `enter`, the rest, `exit` however it
    ended. (The runtime inlines the same for the outermost middleware, which is the point of the hooks.)"""
    token = hooks.enter(ctx)
    try:
        await call_next()
    finally:
        hooks.exit(token, ctx)


def split_consume(middlewares: Sequence[Middleware]) -> tuple[ConsumeHooks[Any] | None, tuple[Middleware, ...]]:
    """The outermost middleware as hooks when it has them, and the middlewares for `chain_consume` inside it."""
    if middlewares and isinstance(middlewares[0], ConsumeHooks):
        return middlewares[0], tuple(middlewares[1:])
    return None, tuple(middlewares)


def chain_consume(middlewares: Sequence[Middleware], ctx: HandleContext, last: ConsumeNext) -> ConsumeNext:
    call = last
    for middleware in reversed(middlewares):
        # `partial`, not a coroutine function around the call: on every hop the middleware's own coroutine is the
        # only one that runs (here and in `chain_publish`).
        call = partial(middleware.consume, call, ctx)
    return call


def chain_publish(middlewares: Sequence[Middleware], last: PublishNext) -> PublishNext:
    call = last
    for middleware in reversed(middlewares):
        call = partial(middleware.publish, call)
    return call
