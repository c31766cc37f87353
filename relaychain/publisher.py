"""`relaychain publish FILE.jsonl`: put requests on the bus and print the answers as they come."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import click
from pydantic import ValidationError

from relaychain import topology
from relaychain.app import make_codec, topic_specs
from relaychain.bus.client import Client
from relaychain.buses import make_bus
from relaychain.observability import TracingMiddleware, setup_telemetry
from relaychain.schemas.events import Request
from relaychain.settings import Settings


async def publish_requests(settings: Settings, lines: Sequence[bytes], *, timeout: float) -> int:
    """Returns how many requests got no answer within `timeout`."""
    requests = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            requests.append(Request.model_validate_json(line))
        except ValidationError as exc:
            raise click.ClickException(f"line {number}: not a valid request: {exc}") from None
    telemetry = setup_telemetry(settings.observability, jsonl_default=settings.data_dir / "traces.jsonl")
    bus = make_bus(settings.bus, kafka_options=settings.kafka)
    await bus.start()
    client = Client(
        bus,
        make_codec(),
        requests_topic=topology.REQUESTS,
        answers_topic=topology.RESPONSES,
        middlewares=(TracingMiddleware(telemetry.tracer_provider),),
    )
    try:
        await bus.create_topics(topic_specs())
        await client.start()
        futures = [await client.submit(request) for request in requests]
        pending = set(futures)
        try:
            async with asyncio.timeout(timeout):
                for next_done in asyncio.as_completed(futures):
                    answer = await next_done
                    click.echo(answer.model_dump_json())
        except TimeoutError:
            pass
        return sum(1 for f in pending if not f.done())
    finally:
        await client.stop()
        await bus.stop()
        telemetry.shutdown()
