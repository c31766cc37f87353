"""The gateway's side of the bus: publish requests, follow their answers, token deltas and step progress.

Answers come through the same `Client` as `relaychain publish`. Token deltas
and step progress are read from the bus only for requests someone is
streaming, and handed to each listener through a bounded queue: a listener
that falls behind loses deltas (they are best-effort), never the answer, and
never slows the bus.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from relaychain import topology
from relaychain.bus.base import Bus, Message, Subscription
from relaychain.bus.client import Client
from relaychain.bus.codec import EventCodec, UndecodableMessage
from relaychain.bus.middleware import Middleware, chain_publish
from relaychain.bus.runtime import EVENT_TYPE_HEADER
from relaychain.gateway.answers import AnswerStore, Tracked
from relaychain.progress import StepsSeen
from relaychain.schemas import Cancel, Event, Job, Request, TokenDelta

__all__ = ["Progress", "RequestHub"]

log = logging.getLogger(__name__)

LISTENER_QUEUE = 1024


@dataclass(frozen=True)
class Progress:
    step: str
    agent: str


StreamItem = TokenDelta | Progress


class RequestHub:
    """One per gateway process; `start` after the bus is started."""

    def __init__(
        self, bus: Bus, codec: EventCodec, client: Client, *, middlewares: tuple[Middleware, ...] = ()
    ) -> None:
        self.bus = bus
        self.codec = codec
        self.client = client
        self.answers = AnswerStore()
        self._publish = chain_publish(middlewares, self._send)
        self._listeners: dict[str, list[asyncio.Queue[StreamItem]]] = defaultdict(list)
        self._steps = StepsSeen()
        self._in_flight_by_conversation: dict[str, str] = {}
        self._subscriptions: list[Subscription] = []
        self.dropped_deltas = 0

    async def start(self) -> None:
        group = f"{topology.PREFIX}gateway.{uuid.uuid4().hex[:12]}"
        self._subscriptions.append(
            await self.bus.subscribe(
                [topology.TOKENS], group=f"{group}.tokens", handler=self._on_delta, start_at="latest"
            )
        )
        step_topics = [inbox[0] for agent, inbox in topology.AGENT_INBOXES.items() if agent != "router"]
        self._subscriptions.append(
            await self.bus.subscribe(step_topics, group=f"{group}.progress", handler=self._on_job, start_at="latest")
        )

    async def stop(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        await asyncio.gather(*(s.stop(drain_timeout=1.0) for s in subscriptions))

    @property
    def ready(self) -> bool:
        return self.bus.connected and all(s.assignment for s in self._subscriptions)

    async def submit(
        self, request: Request, *, tenant: str | None, supersede: bool = False
    ) -> tuple[Tracked, asyncio.Future[Event]]:
        """Publish `request`; with `supersede`, first cancel the conversation's request still in flight."""
        conversation = request.conversation_id
        if supersede and conversation is not None:
            previous = self._in_flight_by_conversation.get(conversation)
            if previous is not None:
                await self.cancel(previous, reason="superseded")
        tracked = self.answers.add(request, tenant)
        future = await self.client.submit(request)
        if conversation is not None:
            self._in_flight_by_conversation[conversation] = request.request_id

        def answered(done: asyncio.Future[Event]) -> None:
            if conversation is not None and self._in_flight_by_conversation.get(conversation) == request.request_id:
                del self._in_flight_by_conversation[conversation]
            if not done.cancelled():
                self.answers.answered(done.result())

        future.add_done_callback(answered)
        return tracked, future

    async def cancel(self, request_id: str, *, reason: str = "cancelled") -> Tracked | None:
        """Publish a `Cancel` keyed like the request; the pipeline answers it with `Cancelled`."""
        tracked = self.answers.get(request_id)
        if tracked is None or tracked.status == "done":
            return tracked
        tracked.status = "cancelling"
        request = tracked.request
        cancel = request.reply(Cancel, reason=reason)
        await self._publish(
            Message(
                topic=topology.CONTROL,
                value=self.codec.encode(cancel),
                key=request.key,
                headers={EVENT_TYPE_HEADER: cancel.type},
            )
        )
        return tracked

    def listen(self, request_id: str) -> asyncio.Queue[StreamItem]:
        queue: asyncio.Queue[StreamItem] = asyncio.Queue(LISTENER_QUEUE)
        self._listeners[request_id].append(queue)
        return queue

    def unlisten(self, request_id: str, queue: asyncio.Queue[StreamItem]) -> None:
        queues = self._listeners.get(request_id)
        if queues and queue in queues:
            queues.remove(queue)
            if not queues:
                del self._listeners[request_id]
                self._steps.forget(request_id)

    async def _on_delta(self, message: Message) -> None:
        if not self._listeners:
            return
        event = self._decode(message)
        if isinstance(event, TokenDelta):
            self._fan_out(event.request_id, event)

    async def _on_job(self, message: Message) -> None:
        if not self._listeners or message.headers.get(EVENT_TYPE_HEADER) != "job":
            return
        event = self._decode(message)
        if isinstance(event, Job) and event.request_id in self._listeners:
            for record in self._steps.new_steps(event):
                self._fan_out(event.request_id, Progress(step=record.step, agent=record.agent))

    def _decode(self, message: Message) -> Event | None:
        try:
            return self.codec.decode(message.value)
        except UndecodableMessage:
            return None

    def _fan_out(self, request_id: str, item: StreamItem) -> None:
        for queue in self._listeners.get(request_id, ()):
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                self.dropped_deltas += 1

    async def _send(self, message: Message) -> None:
        await self.bus.publish(message.topic, message.value, key=message.key, headers=message.headers)


def answer_body(answer: Event) -> dict[str, Any]:
    return answer.model_dump(mode="json")
