"""Faults injected from inside the workers, named in their config like any user middleware.

`FailOncePublish` makes exactly one publish fail, across every worker process
of a run (the first to create the marker file wins), with the transient error
the Kafka backend raises when a broker hiccups. `huge_reply_script` makes the
model answer one call with a text larger than the broker accepts.
"""

from __future__ import annotations

import os
from pathlib import Path

from relaychain.bus import BusError, Message
from relaychain.bus.middleware import ConsumeNext, HandleContext, PublishNext
from tests.support.instant_model import INSTANT_REPLIES, instant_model
from tests.support.openai_server import OpenAITestServer, Reply

FAIL_ONCE_ENV = "RELAYCHAIN_FAULT_MARKER"
HUGE_REPLY_BYTES = 1_200_000


class FailOncePublish:
    """Fails the first publish to an agent inbox (not an answer, not usage) in the whole run, once."""

    def __init__(self) -> None:
        self._marker = Path(os.environ.get(FAIL_ONCE_ENV) or Path(os.environ["RELAYCHAIN_DATA_DIR"]) / "publish-failed")

    async def consume(self, call_next: ConsumeNext, ctx: HandleContext) -> None:
        await call_next()

    async def publish(self, call_next: PublishNext, message: Message) -> None:
        if message.topic.endswith(".formatter") and self._claim():
            raise BusError(f"injected: publishing to {message.topic} failed: UnknownError (retryable)")
        await call_next(message)

    def _claim(self) -> bool:
        try:
            self._marker.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self._marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.close(descriptor)
        return True


def huge_reply_script(server: OpenAITestServer, *, after: int, business: str = "news_comment") -> None:
    """`business`'s model answers `after` calls normally, then one too large for the broker, then normally again."""
    normal = Reply(text=INSTANT_REPLIES[business], input_tokens=40, output_tokens=20, delay_s=0.2)
    huge = Reply(text="x" * HUGE_REPLY_BYTES, input_tokens=40, output_tokens=20, delay_s=0.2)
    server.script(instant_model(business), *([normal] * after), huge, normal)


RAISE_ONCE: set[str] = set()
"""Request ids whose first handling raises (outside any agent), in this process."""
RAISE_ALWAYS: set[str] = set()
"""Request ids whose handling always raises, in this process."""


class RaisingConsume:
    """Raises around the router's handling of chosen requests, outside the agent's `handle`: once with a
    transient broker error (retried), or always with an unexpected one (answered as an `Error`)."""

    def __init__(self) -> None:
        self._raised: set[str] = set()

    async def consume(self, call_next: ConsumeNext, ctx: HandleContext) -> None:
        request_id = ctx.event.request_id if ctx.event is not None else None
        if ctx.agent == "router" and request_id is not None:
            if request_id in RAISE_ALWAYS:
                raise RuntimeError(f"injected: handling {request_id} always fails")
            if request_id in RAISE_ONCE and request_id not in self._raised:
                self._raised.add(request_id)
                raise BusError(f"injected: handling {request_id} fails once (retryable)")
        await call_next()

    async def publish(self, call_next: PublishNext, message: Message) -> None:
        await call_next(message)
