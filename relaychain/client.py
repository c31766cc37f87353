"""`relaychain.Client`: put requests on the bus and await, or stream, their answers.

    async with Client.connect("kafka://127.0.0.1:9092") as client:
        answer = await client.ask(business="ops_push", input="20% off", vars={...})

`Client.connect` takes a bus URL or `Settings` (the bus, the Kafka options and
the tracing exporters of your config). On the memory bus the agents must run in
the same process: `App` has a client of its own, `app.client`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

from opentelemetry import trace
from opentelemetry.trace import TracerProvider

from relaychain import topology
from relaychain.app import make_codec, topic_specs
from relaychain.bus.base import Bus, Message, StartStop, Subscription
from relaychain.bus.client import AnswerTimeout
from relaychain.bus.client import Client as AnswerClient
from relaychain.bus.codec import EventCodec, UndecodableMessage
from relaychain.buses import make_bus
from relaychain.observability import Telemetry, TracingMiddleware, setup_telemetry
from relaychain.progress import StepsSeen
from relaychain.schemas.envelope import Event
from relaychain.schemas.events import Job, Request
from relaychain.settings import Settings

__all__ = ["AnswerTimeout", "Client", "Progress"]

DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class Progress:
    """A step of the request's slip has finished: `agent` ran `step`."""

    request_id: str
    step: str
    agent: str


class Client(StartStop):
    """Publishes `Request`s and matches the answers (`Response`, `Error`, `Blocked`) by request id.

    Build it with `Client.connect(...)`, or over a bus you started yourself
    (`Client(bus)`: the bus stays yours to stop).
    """

    def __init__(
        self,
        bus: Bus,
        *,
        codec: EventCodec | None = None,
        tracer_provider: TracerProvider | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        create_topics: bool = False,
        progress_topics: Sequence[str] = (),
    ) -> None:
        self.bus = bus
        self.timeout = timeout
        self._codec = codec or make_codec()
        self._telemetry: Telemetry | None = None  # set by `connect`, which sets it up from the settings
        self._owns_bus = False
        self._create_topics = create_topics
        # Without settings, spans go wherever the host application set up OpenTelemetry.
        tracer_provider = tracer_provider or trace.get_tracer_provider()
        self._tracer = tracer_provider.get_tracer("relaychain.client")
        self._answers = AnswerClient(
            bus,
            self._codec,
            requests_topic=topology.REQUESTS,
            answers_topic=topology.RESPONSES,
            middlewares=(TracingMiddleware(tracer_provider),),
        )
        # Jobs travel on the agents' inboxes; a streaming caller reads them there to report each finished step.
        self._progress_topics = tuple(dict.fromkeys([*_step_topics(), *progress_topics]))
        self._progress: Subscription | None = None
        self._progress_lock = asyncio.Lock()
        self._listeners: dict[str, asyncio.Queue[Progress]] = {}
        self._steps = StepsSeen()

    @classmethod
    def connect(
        cls, target: str | Settings | None = None, *, timeout: float | None = None, **kafka_options: Any
    ) -> Self:
        """A client on `target`: a bus URL (`kafka://host:port`, `memory://`) or `Settings` (`load_settings()`).

        Use it as `async with Client.connect(...) as client:`; the bus starts and stops with it.
        """
        if isinstance(target, Settings):
            telemetry = setup_telemetry(target.observability, jsonl_default=target.data_dir / "traces.jsonl")
            bus = make_bus(target.bus, kafka_options={**target.kafka, **kafka_options})
            client = cls(
                bus,
                tracer_provider=telemetry.tracer_provider,
                timeout=timeout or target.runtime.answer_timeout_s,
                create_topics=target.runtime.create_topics,
                progress_topics=tuple(target.runtime.routes.values()),
            )
            client._telemetry = telemetry
        else:
            bus = make_bus(target or "memory://", kafka_options=kafka_options)
            client = cls(bus, timeout=timeout or DEFAULT_TIMEOUT_S, create_topics=True)
        client._owns_bus = True
        return client

    async def start(self) -> None:
        if self._owns_bus:
            await self.bus.start()
        if self._create_topics:
            await self.bus.create_topics(topic_specs())
        await self._answers.start()

    async def stop(self) -> None:
        await self._answers.stop()
        if self._progress is not None:
            await self._progress.stop(drain_timeout=1.0)
            self._progress = None
        if self._owns_bus:
            await self.bus.stop()
        if self._telemetry is not None:
            self._telemetry.shutdown()

    async def submit(self, request: Request | None = None, /, **fields: Any) -> asyncio.Future[Event]:
        """Publish `request` (or one built from `fields`); the future resolves with its answer."""
        request = _request(request, fields)
        attributes = {"relaychain.request.id": request.request_id, "relaychain.business": request.business}
        with self._tracer.start_as_current_span(
            f"request {request.business}", kind=trace.SpanKind.PRODUCER, attributes=attributes
        ):
            return await self._answers.submit(request)

    async def ask(self, request: Request | None = None, /, *, timeout: float | None = None, **fields: Any) -> Event:
        """Publish a request and return its answer: a `Response`, an `Error` or a `Blocked`.

        Raises `AnswerTimeout` when no answer comes within `timeout` seconds.
        """
        request = _request(request, fields)
        future = await self.submit(request)
        return await _answer(future, request.request_id, timeout or self.timeout)

    async def stream(
        self, request: Request | None = None, /, *, timeout: float | None = None, **fields: Any
    ) -> AsyncIterator[Progress | Event]:
        """Yield a `Progress` as each step of the slip finishes, then the answer, then stop.

        The steps are read from the agents' topics, so every streaming client
        reads all jobs in flight: meant for a few interactive callers, not for
        batch publishing (`submit` is).
        """
        request = _request(request, fields)
        await self._follow_progress()
        queue: asyncio.Queue[Progress] = asyncio.Queue()
        self._listeners[request.request_id] = queue
        try:
            future = await self.submit(request)
            deadline = asyncio.get_running_loop().time() + (timeout or self.timeout)
            while not future.done():
                step = asyncio.ensure_future(queue.get())
                left = deadline - asyncio.get_running_loop().time()
                waiting: set[asyncio.Future[Any]] = {step, future}
                done, _ = await asyncio.wait(waiting, timeout=max(left, 0), return_when=asyncio.FIRST_COMPLETED)
                if step in done:
                    yield step.result()
                else:
                    step.cancel()
                if not done:
                    raise AnswerTimeout(request.request_id, timeout or self.timeout)
            while not queue.empty():
                yield queue.get_nowait()
            yield future.result()
        finally:
            self._listeners.pop(request.request_id, None)
            self._steps.forget(request.request_id)

    async def _follow_progress(self) -> None:
        async with self._progress_lock:
            if self._progress is None:
                self._progress = await self.bus.subscribe(
                    self._progress_topics,
                    group=f"relaychain.progress.{uuid.uuid4().hex[:12]}",
                    handler=self._on_job,
                    start_at="latest",
                )

    async def _on_job(self, message: Message) -> None:
        if not self._listeners:
            return
        try:
            event = self._codec.decode(message.value)
        except UndecodableMessage:
            return
        queue = self._listeners.get(event.request_id)
        if queue is not None and isinstance(event, Job):
            for done in self._steps.new_steps(event):
                queue.put_nowait(Progress(request_id=event.request_id, step=done.step, agent=done.agent))


def _request(request: Request | None, fields: dict[str, Any]) -> Request:
    if request is not None and fields:
        raise TypeError("pass a Request or its fields, not both")
    return request if request is not None else Request(**fields)


async def _answer(future: asyncio.Future[Event], request_id: str, timeout: float) -> Event:
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        raise AnswerTimeout(request_id, timeout) from None


def _step_topics() -> Iterable[str]:
    return (inbox[0] for agent, inbox in topology.AGENT_INBOXES.items() if agent != "router")
