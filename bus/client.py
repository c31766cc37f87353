"""The publisher's side: put events on a topic and wait for the answers that correlate with them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta

from relaychain.bus.base import Bus, Message, Subscription
from relaychain.bus.codec import CONTENT_TYPE, EventCodec, UndecodableMessage
from relaychain.bus.middleware import Middleware, chain_publish
from relaychain.bus.runtime import EVENT_TYPE_HEADER
from relaychain.schemas.envelope import Event, utc_now


class AnswerTimeout(Exception):
    def __init__(self, request_id: str, timeout: float) -> None:
        super().__init__(
            f"no answer for request {request_id} within {timeout:g}s: is an agent consuming the requests topic?"
        )
        self.request_id = request_id


class Client:
    """Publishes requests and matches answers by `request_id`.

    The client reads the answers topic in a group of its own, so every client
    sees every answer and keeps only its own.
    """

    def __init__(
        self,
        bus: Bus,
        codec: EventCodec,
        *,
        requests_topic: str,
        answers_topic: str,
        middlewares: Sequence[Middleware] = (),
    ) -> None:
        self.bus = bus
        self.codec = codec
        self.requests_topic = requests_topic
        self.answers_topic = answers_topic
        self._publish = chain_publish(middlewares, self._send)
        self._waiting: dict[str, asyncio.Future[Event]] = {}
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe(
            [self.answers_topic],
            group=f"relaychain.client.{uuid.uuid4().hex[:12]}",
            handler=self._on_answer,
            start_at="latest",
        )

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.stop(drain_timeout=1.0)

    async def submit(self, event: Event, *, timeout: float | None = None) -> asyncio.Future[Event]:
        """Publish `event`; the returned future resolves with its answer.

        The event's deadline is set here, where work enters the bus: from its own
        `options.timeout_s` when it has one, else from `timeout` (how long the
        caller waits). Agents answer `deadline_exceeded` to work that arrives later.
        """
        event = _with_deadline(event, timeout)
        future = self._waiting.get(event.request_id)
        if future is None:
            future = self._waiting[event.request_id] = asyncio.get_running_loop().create_future()
            future.add_done_callback(lambda _: self._waiting.pop(event.request_id, None))
        await self._publish(
            Message(
                topic=self.requests_topic,
                value=self.codec.encode(event),
                key=event.key,
                headers={EVENT_TYPE_HEADER: event.type, "content-type": CONTENT_TYPE},
            )
        )
        return future

    async def ask(self, event: Event, *, timeout: float) -> Event:
        future = await self.submit(event, timeout=timeout)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise AnswerTimeout(event.request_id, timeout) from None

    async def _on_answer(self, message: Message) -> None:
        try:
            event = self.codec.decode(message.value)
        except UndecodableMessage:
            return
        future = self._waiting.get(event.request_id)
        if future is not None and not future.done():
            future.set_result(event)

    async def _send(self, message: Message) -> None:
        await self.bus.publish(message.topic, message.value, key=message.key, headers=message.headers)


def _with_deadline(event: Event, timeout: float | None) -> Event:
    if event.deadline is not None:
        return event
    options = getattr(event, "options", None)
    own = getattr(options, "timeout_s", None)
    seconds = own if isinstance(own, int | float) else timeout
    if seconds is None:
        return event
    return event.model_copy(update={"deadline": utc_now() + timedelta(seconds=seconds)})
