"""`relaychain publish FILE.jsonl`: put requests on the bus and print the answers as they come.

Lines are read, validated and published one at a time while earlier answers
are printed, with at most `max_in_flight` requests awaiting an answer. A line
that is not a valid request is reported with its number and the others go
on; a broker error while publishing is retried with backoff a bounded number
of times, then that line is reported as not sent. Lines of one conversation
are published in file order, since the key keeps their order only from the
broker on. Answers go to stdout as JSON lines, problems and the summary to
stderr.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO

from pydantic import ValidationError

from relaychain import topology
from relaychain.app import make_codec, topic_specs
from relaychain.bus.base import BusError
from relaychain.bus.client import Client
from relaychain.buses import make_bus
from relaychain.observability import TracingMiddleware, setup_telemetry
from relaychain.schemas.envelope import Error, Event
from relaychain.schemas.events import Blocked, Request, Response
from relaychain.settings import RuntimeSettings, Settings

__all__ = ["PublishSummary", "Publisher", "connected_client", "numbered_lines"]

log = logging.getLogger(__name__)


@dataclass
class PublishSummary:
    sent: int = 0
    responses: int = 0
    errors: int = 0
    blocked: int = 0
    timeouts: int = 0
    bad_lines: int = 0
    not_sent: int = 0

    @property
    def answered(self) -> int:
        return self.responses + self.errors + self.blocked

    @property
    def failed(self) -> bool:
        """Anything but a `Response` for every line: a blocked request produced no output either."""
        return bool(self.errors or self.blocked or self.timeouts or self.bad_lines or self.not_sent)

    def line(self) -> str:
        return (
            f"sent {self.sent}, answered {self.answered} (responses {self.responses}, errors {self.errors}, "
            f"blocked {self.blocked}), timeouts {self.timeouts}, bad lines {self.bad_lines}, not sent {self.not_sent}"
        )


@dataclass(frozen=True)
class Retry:
    """Bounded retries of a publish the broker refused: `attempts` in all, delays doubling up to a cap."""

    attempts: int
    base_delay_s: float
    max_delay_s: float

    @classmethod
    def of(cls, runtime: RuntimeSettings) -> Retry:
        return cls(runtime.retry_attempts, runtime.retry_base_delay_s, runtime.retry_max_delay_s)

    def delay(self, attempt: int) -> float:
        return min(self.base_delay_s * 2 ** (attempt - 1), self.max_delay_s)


class Publisher:
    """Publishes numbered JSON lines through a `Client` and hands each answer to `on_answer` as it arrives."""

    def __init__(
        self,
        client: Client,
        *,
        timeout: float,
        max_in_flight: int,
        retry: Retry,
        on_answer: Callable[[Event], None],
        on_problem: Callable[[str], None],
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._slots = asyncio.Semaphore(max_in_flight)
        self._retry = retry
        self._on_answer = on_answer
        self._on_problem = on_problem
        self._summary = PublishSummary()
        self._first_line_of: dict[str, int] = {}
        # The last publish per key: a conversation's next line is published only after it.
        self._last_publish: dict[str, asyncio.Future[None]] = {}

    async def publish(self, lines: AsyncIterator[tuple[int, bytes]]) -> PublishSummary:
        async with asyncio.TaskGroup() as tasks:
            async for number, line in lines:
                request = self._parse(number, line)
                if request is None:
                    continue
                await self._slots.acquire()
                previous = self._last_publish.get(request.key)
                published = asyncio.get_running_loop().create_future()
                self._last_publish[request.key] = published
                tasks.create_task(self._send_and_wait(number, request, previous, published))
        return self._summary

    def _parse(self, number: int, line: bytes) -> Request | None:
        if not line.strip():
            return None
        try:
            request = Request.model_validate_json(line)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in exc.errors())
            self._bad_line(number, f"not a valid request: {problems}")
            return None
        first = self._first_line_of.setdefault(request.request_id, number)
        if first != number:
            self._bad_line(number, f"request_id {request.request_id} was already sent on line {first}")
            return None
        return request

    def _bad_line(self, number: int, reason: str) -> None:
        self._summary.bad_lines += 1
        self._on_problem(f"line {number}: {reason}")

    async def _send_and_wait(
        self, number: int, request: Request, previous: asyncio.Future[None] | None, published: asyncio.Future[None]
    ) -> None:
        try:
            answer = await self._publish_in_order(number, request, previous, published)
            if answer is None:
                return
            try:
                self._record(await asyncio.wait_for(answer, self._timeout))
            except TimeoutError:
                self._summary.timeouts += 1
                self._on_problem(f"line {number}: no answer for request {request.request_id} within {self._timeout:g}s")
        finally:
            self._slots.release()

    async def _publish_in_order(
        self, number: int, request: Request, previous: asyncio.Future[None] | None, published: asyncio.Future[None]
    ) -> asyncio.Future[Event] | None:
        try:
            if previous is not None:
                await previous
            return await self._submit(number, request)
        finally:
            published.set_result(None)
            if self._last_publish.get(request.key) is published:
                del self._last_publish[request.key]

    async def _submit(self, number: int, request: Request) -> asyncio.Future[Event] | None:
        attempt = 1
        while True:
            try:
                answer = await self._client.submit(request)
            except BusError as exc:
                log.info("line %d: publish attempt %d failed", number, attempt, exc_info=True)
                if attempt == self._retry.attempts:
                    self._summary.not_sent += 1
                    self._on_problem(f"line {number}: not sent after {attempt} attempt(s): {exc}")
                    return None
                await asyncio.sleep(self._retry.delay(attempt))
                attempt += 1
            else:
                self._summary.sent += 1
                return answer

    def _record(self, answer: Event) -> None:
        if isinstance(answer, Response):
            self._summary.responses += 1
        elif isinstance(answer, Blocked):
            self._summary.blocked += 1
        elif isinstance(answer, Error):
            self._summary.errors += 1
        self._on_answer(answer)


async def numbered_lines(source: IO[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    """`(line number, line)` from a file or pipe, read in a thread so a slow stdin never stalls the answers."""
    lines: Iterator[bytes] = iter(source)
    number = 0
    while (line := await asyncio.to_thread(next, lines, None)) is not None:
        number += 1
        yield number, line


@asynccontextmanager
async def connected_client(settings: Settings) -> AsyncIterator[Client]:
    """A started client on `settings.bus` (topics created), reading the answers topic."""
    telemetry = setup_telemetry(settings.observability, jsonl_default=settings.data_dir / "traces.jsonl")
    bus = make_bus(settings.bus, kafka_options=settings.kafka)
    client = Client(
        bus,
        make_codec(),
        requests_topic=topology.REQUESTS,
        answers_topic=topology.RESPONSES,
        middlewares=(TracingMiddleware(telemetry.tracer_provider),),
    )
    try:
        await bus.start()
        await bus.create_topics(topic_specs())
        await client.start()
        yield client
    finally:
        await client.stop()
        await bus.stop()
        telemetry.shutdown()
