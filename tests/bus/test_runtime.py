"""Runtime specifics on the memory bus: errors raised in tests, retry delays, deadlines set where work enters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest

from relaychain.bus import HandlerFailed, MemoryBus
from relaychain.bus.client import Client
from relaychain.bus.codec import EventCodec
from relaychain.bus.dispatch import Redelivery
from relaychain.bus.runtime import AgentRuntime, RetryPolicy, Routes
from relaychain.schemas import Error, Event
from relaychain.schemas.envelope import utc_now
from relaychain.schemas.events import Request, RequestOptions
from tests.bus.test_contract import Ping, Pong


def runtime_for(bus: MemoryBus) -> AgentRuntime:
    routes = Routes(type_topics={"pong": "answers", "error": "answers"}, step_topic=str, deadletter="dlq")
    retry = RetryPolicy(max_attempts=2, base_delay_s=0.001, max_delay_s=0.01)
    return AgentRuntime(bus, EventCodec([Ping, Pong]), routes, retry=retry, raise_errors=True)


class Sometimes:
    name = "sometimes"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def handle(self, event: Event) -> Sequence[Event]:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"failure {self.calls}")
        return [event.reply(Pong)]


async def test_in_tests_a_raise_is_redelivered_and_then_answered() -> None:
    async with MemoryBus(redelivery=Redelivery(max_deliveries=3, base_delay_s=0.001)) as bus:
        runtime = runtime_for(bus)
        agent = Sometimes(failures=1)
        await runtime.add(agent, ["in"], group="g")
        await bus.publish("in", runtime.codec.encode(Ping()), key="k")
        await bus.run_until_idle(timeout=5)
        assert agent.calls == 2
        assert [runtime.codec.decode(m.value).type for m in bus.messages("answers")] == ["pong"]


async def test_in_tests_a_handler_that_always_raises_fails_run_until_idle_instead_of_hanging() -> None:
    async with MemoryBus(redelivery=Redelivery(max_deliveries=3, base_delay_s=0.001)) as bus:
        runtime = runtime_for(bus)
        await runtime.add(Sometimes(failures=10**6), ["in"], group="g")
        await bus.publish("in", runtime.codec.encode(Ping()), key="k")
        with pytest.raises(HandlerFailed) as caught:
            await bus.run_until_idle(timeout=5)
        assert str(caught.value.__cause__) == "failure 3"


def test_a_server_retry_after_hint_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay_s=0.1, max_delay_s=5.0)
    assert 0.05 <= policy.delay(0) <= 0.1
    assert policy.delay(0, retry_after_s=3.0) == 3.0
    assert policy.delay(0, retry_after_s=60.0) == 5.0


async def test_the_client_sets_the_deadline_from_its_timeout_or_the_request_options() -> None:
    async with MemoryBus() as bus:
        codec = EventCodec([Ping, Pong, Request])
        client = Client(bus, codec, requests_topic="requests", answers_topic="answers")
        await client.start()
        before = utc_now()
        ping = Ping()
        await client.submit(ping, timeout=30)
        sent = codec.decode(bus.messages("requests")[0].value)
        assert sent.request_id == ping.request_id
        assert sent.deadline is not None
        assert before + timedelta(seconds=29) < sent.deadline <= utc_now() + timedelta(seconds=30)
        assert sent.reply(Error, code="x", message="y", agent="z").deadline == sent.deadline
        own = Request(business="b", input="hi", options=RequestOptions(timeout_s=5))
        await client.submit(own, timeout=600)
        decoded = [codec.decode(m.value) for m in bus.messages("requests")]
        entered = next(e for e in decoded if e.request_id == own.request_id)
        assert entered.deadline is not None and entered.deadline <= utc_now() + timedelta(seconds=5)
        await client.stop()
