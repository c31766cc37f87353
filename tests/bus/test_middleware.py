"""Consume middlewares: hooks called around the chain by the runtime, coroutine middlewares inside them."""

from __future__ import annotations

from collections.abc import Sequence

from relaychain.bus import MemoryBus
from relaychain.bus.base import Message
from relaychain.bus.codec import EventCodec
from relaychain.bus.middleware import ConsumeNext, HandleContext, PublishNext, consume_with_hooks, split_consume
from relaychain.bus.runtime import AgentRuntime, RetryPolicy, Routes
from relaychain.schemas import Event
from tests.bus.test_contract import Ping, Pong


class Hooks:
    """Before and after only: `enter` / `exit`, and the same as a coroutine for chains that call `consume`."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def enter(self, ctx: HandleContext) -> str:
        self.log.append(f"enter {ctx.agent}")
        return f"token {ctx.agent}"

    def exit(self, token: object, ctx: HandleContext) -> None:
        self.log.append(f"exit {token} {ctx.outcome}")

    async def consume(self, call_next: ConsumeNext, ctx: HandleContext) -> None:
        await consume_with_hooks(self, call_next, ctx)

    async def publish(self, call_next: PublishNext, message: Message) -> None:
        await call_next(message)


class Around:
    """A user's coroutine middleware."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def consume(self, call_next: ConsumeNext, ctx: HandleContext) -> None:
        self.log.append("around before")
        await call_next()
        self.log.append(f"around after {ctx.outcome}")

    async def publish(self, call_next: PublishNext, message: Message) -> None:
        await call_next(message)


class Recording:
    name = "agent"

    def __init__(self, log: list[str], fail: bool = False) -> None:
        self.log, self.fail = log, fail

    async def handle(self, event: Event) -> Sequence[Event]:
        self.log.append("handle")
        if self.fail:
            raise ValueError("no")
        return [event.reply(Pong)]


def test_only_an_outermost_middleware_with_both_hooks_is_split_off() -> None:
    log: list[str] = []
    hooks, around = Hooks(log), Around(log)
    assert split_consume([hooks, around]) == (hooks, (around,))
    assert split_consume([around, hooks]) == (None, (around, hooks))
    assert split_consume([]) == (None, ())


async def test_hooks_run_around_the_coroutine_middlewares_and_see_the_outcome() -> None:
    log: list[str] = []
    routes = Routes(type_topics={"pong": "answers", "error": "answers"}, step_topic=str, deadletter="dlq")
    async with MemoryBus() as bus:
        runtime = AgentRuntime(
            bus,
            EventCodec([Ping, Pong]),
            routes,
            middlewares=[Hooks(log), Around(log)],
            retry=RetryPolicy(max_attempts=1),
        )
        await runtime.add(Recording(log), ["in"], group="ok")
        await runtime.add(Recording(log, fail=True), ["failing"], group="failing")
        await bus.publish("in", runtime.codec.encode(Ping()), key="k")
        await bus.run_until_idle(timeout=5)
        assert log == ["enter agent", "around before", "handle", "around after ok", "exit token agent ok"]
        log.clear()
        await bus.publish("failing", runtime.codec.encode(Ping()), key="k")
        await bus.run_until_idle(timeout=5)
        assert log[:2] == ["enter agent", "around before"]
        assert log[-2:] == ["around after dead_lettered", "exit token agent dead_lettered"]
        assert sorted(runtime.codec.decode(m.value).type for m in bus.messages("answers")) == ["error", "pong"]


async def test_an_unreadable_message_goes_through_the_hooks_too() -> None:
    log: list[str] = []
    routes = Routes(type_topics={}, step_topic=str, deadletter="dlq")
    async with MemoryBus() as bus:
        runtime = AgentRuntime(bus, EventCodec([Ping]), routes, middlewares=[Hooks(log)])
        await runtime.add(Recording(log), ["in"], group="g")
        await bus.publish("in", b"not json", key="k")
        await bus.run_until_idle(timeout=5)
        assert log == ["enter agent", "exit token agent dead_lettered"]
        assert len(bus.messages("dlq")) == 1
