"""Tokens/s of relaychain's counting path against raw tiktoken on the same text, in the same run.

    python bench/tokens.py              # cl100k_base and o200k_base; 1 KB, 16 KB and 64 KB inputs
    python bench/tokens.py --calls 500

Part 1 (counting). relaychain's path is what the tokenizer agent does per
input: `counter_for(model, name)` (the per-process cache lookup) then
`.count(text)`, and the awaited `count_async` that moves inputs over 8 KB to
the tokeniser thread. The baselines are raw `tiktoken.Encoding.encode(text)`
and `encode_ordinary(text)`. Everything runs inside one event loop, as in
the agent, and eight awaited counts gathered show the throughput of a busy
agent, whose loop keeps working while the tokeniser thread counts. Calls of all variants are interleaved and each variant's fastest
call is kept (as `timeit` advises), so neighbours on a shared machine do
not decide the result. Target: relaychain >= 90 % of raw.

One awaited count of an input just over 8 KB pays a fixed thread hop (two
wake-ups, about 0.1-0.2 ms) on about 1 ms of work; that is the price of
never stalling the event loop, and it vanishes under concurrency.

Part 2 (framework overhead). One ops_push request at a time through route ->
budget -> generate (priced) -> format, with an instant model
(`bench/instant.py`: fixed schema-valid JSON, no wait), against the LangChain
LCEL chain `ChatPromptTemplate | FakeListChatModel | JsonOutputParser` doing
the same prompt -> model -> JSON parse with `ainvoke`. relaychain runs twice:
the four agents' handlers called in turn (the agents' own work), and the same
agents hosted on the memory bus by the runtime with tracing on (codec,
dedupe, spans exported as JSON lines, routing by the slip) — the request
measured from `client.ask` to its answer; the usage line's trip to the
ledger happens after the answer and off the clock. The bare instant model call is the floor;
overhead = latency - that floor. Requests of all variants are interleaved.

    python bench/tokens.py --only overhead --requests 2000
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.instant import (
    InstantModel,
    instant_factories,
    langchain_chain,
    langchain_inputs,
)
from relaychain.agents.llm import CompletionRequest
from relaychain.agents.tokens import count_async, counter_for, load_encoding
from relaychain.app import Components
from relaychain.embedded import EmbeddedApp
from relaychain.schemas import ChatMessage, Event, Request, Response
from relaychain.schemas.config import ModelConfig, Price
from relaychain.settings import Settings, load_settings

PARAGRAPH = (
    "Relaychain routes every request as an event through seven agents. "
    "每个业务都有自己的提示词模板，输出必须是标准 JSON，敏感词绝不能通过。 "
    "The car blog chain writes an opening, a middle and an ending from spec sheets: 续航 520 km, 0-100 km/h 6.9 s. "
)
INPUTS = {"1 KB": PARAGRAPH * 4, "16 KB": PARAGRAPH * 64, "64 KB": PARAGRAPH * 256}
ENCODINGS = ("cl100k_base", "o200k_base")
RAW, RAW_ORDINARY, COUNT, ASYNC = "tiktoken encode", "tiktoken encode_ordinary", "counter_for().count", "count_async"
CONCURRENT = "count_async x8 gathered"
FAN_OUT = 8

Variant = Callable[[], Awaitable[int]]


def model_for(encoding: str) -> ModelConfig:
    return ModelConfig(
        provider="openai",
        tokenizer=f"tiktoken:{encoding}",
        context_window=128_000,
        max_output_tokens=4096,
        price=Price(input_per_million="1", output_per_million="1"),
    )


def variants(encoding_name: str, text: str) -> dict[str, Variant]:
    encoding = load_encoding(encoding_name)
    model, name = model_for(encoding_name), f"bench-{encoding_name}"

    # Every variant is a coroutine, so each pays the same await overhead.
    async def raw() -> int:
        return len(encoding.encode(text))

    async def raw_ordinary() -> int:
        return len(encoding.encode_ordinary(text))

    # The counter remembers counts of texts up to 4 KB; forgotten before each call so tokenising is measured.
    async def count() -> int:
        counter = counter_for(model, name)
        forget(counter)
        return counter.count(text)

    async def awaited() -> int:
        counter = counter_for(model, name)
        forget(counter)
        return await count_async(counter, text)

    async def gathered() -> int:
        # Eight jobs at once, as a busy agent sees them: the loop stays free while the tokeniser thread works.
        return sum(await asyncio.gather(*(count_async(counter_for(model, name), text) for _ in range(FAN_OUT))))

    return {RAW: raw, RAW_ORDINARY: raw_ordinary, COUNT: count, ASYNC: awaited, CONCURRENT: gathered}


def forget(counter: object) -> None:
    clear = getattr(counter, "clear_cache", None)
    if clear is not None:
        clear()


async def fastest_rates(calls: dict[str, Variant], repeat: int) -> dict[str, float]:
    """Tokens/s of each variant's fastest call out of `repeat`, calls interleaved across variants."""
    best = dict.fromkeys(calls, float("inf"))
    tokens = dict.fromkeys(calls, 0)
    for call in calls.values():
        await call()  # warm up: caches, the tokeniser thread and its private encoding
    for _ in range(repeat):
        for label, call in calls.items():
            start = time.perf_counter()
            tokens[label] = await call()
            best[label] = min(best[label], time.perf_counter() - start)
    return {label: tokens[label] / best[label] for label in calls}


async def bench_counting(repeat: int) -> list[tuple[str, str, dict[str, float]]]:
    results = []
    for encoding_name in ENCODINGS:
        for size, text in INPUTS.items():
            results.append((encoding_name, size, await fastest_rates(variants(encoding_name, text), repeat)))
    return results


OVERHEAD_MODEL = "gpt-4o-mini"
OVERHEAD_STEPS = ("budget", "generate", "format")
BARE, LCEL, HANDLERS, BUS = (
    "instant model call alone (floor)",
    "LangChain LCEL: prompt \\| FakeListChatModel \\| JsonOutputParser, ainvoke",
    "relaychain agents' handlers: route, budget, generate + price, format",
    "relaychain on the memory bus, tracing on: route, budget, generate + price, format",
)

Latency = Callable[[int], Awaitable[float]]
"""Runs request number i and returns its latency in seconds."""


def overhead_settings(data_dir: Path) -> Settings:
    """The shipped config with ops_push's slip cut to the steps measured here."""
    settings = load_settings(
        data_dir=data_dir, observability={"exporters": ["jsonl"], "jsonl_path": str(data_dir / "traces.jsonl")}
    )
    ops_push = settings.app.businesses["ops_push"].model_copy(update={"steps": OVERHEAD_STEPS})
    app = settings.app.model_copy(update={"businesses": {**settings.app.businesses, "ops_push": ops_push}})
    return settings.model_copy(update={"app": app})


def overhead_request(index: int) -> Request:
    return Request(
        business="ops_push",
        model=OVERHEAD_MODEL,
        input=f"Half price on everything, offer {index}",
        vars={"campaign": "Double 11", "audience": "students"},
    )


async def measure(variants: dict[str, Latency], requests: int, warmup: int = 50) -> dict[str, list[float]]:
    for index in range(warmup):
        for call in variants.values():
            await call(index)
    samples: dict[str, list[float]] = {label: [] for label in variants}
    for index in range(requests):
        for label, call in variants.items():
            samples[label].append(await call(index))
    return samples


async def bench_overhead(requests: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="relaychain-bench-") as tmp:
        settings = overhead_settings(Path(tmp))
        handlers = Components(settings, model_factories=instant_factories())
        router, tokenizer, generator, formatter = [
            await handlers.agent(n) for n in ("router", "tokenizer", "generator", "formatter")
        ]
        bus_components = Components(settings, model_factories=instant_factories())
        chain = langchain_chain()
        model = InstantModel(OVERHEAD_MODEL, settings.app.models[OVERHEAD_MODEL])
        messages = [ChatMessage(role="user", content="Write a push notification.")]

        async def bare(index: int) -> float:
            started = time.perf_counter()
            await model.complete(CompletionRequest(messages=messages, max_tokens=256))
            return time.perf_counter() - started

        async def lcel(index: int) -> float:
            started = time.perf_counter()
            output = await chain.ainvoke(langchain_inputs(index))
            elapsed = time.perf_counter() - started
            assert output["title"]
            return elapsed

        async def direct(index: int) -> float:
            started = time.perf_counter()
            event: Event = overhead_request(index)
            for agent in (router, tokenizer, generator, formatter):
                event = (await agent.handle(event))[0]
            elapsed = time.perf_counter() - started
            assert isinstance(event, Response), event
            return elapsed

        try:
            async with EmbeddedApp(
                settings, agents=["router", "tokenizer", "generator", "formatter"], components=bus_components
            ) as app:

                async def on_bus(index: int) -> float:
                    started = time.perf_counter()
                    answer = await app.client.ask(overhead_request(index), timeout=30)
                    elapsed = time.perf_counter() - started
                    assert isinstance(answer, Response), answer
                    await app.bus.run_until_idle()
                    return elapsed

                return await measure({BARE: bare, LCEL: lcel, HANDLERS: direct, BUS: on_bus}, requests)
        finally:
            await handlers.close()


def print_overhead(samples: dict[str, list[float]], requests: int) -> None:
    print(f"\n## Framework overhead, one request at a time, instant model ({requests:,} requests each)\n")
    print("| path | p50 µs | p99 µs | overhead p50 µs | overhead p99 µs | p50 vs LangChain |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    floor50, floor99 = _percentiles(samples[BARE])
    lcel50, _ = _percentiles(samples[LCEL])
    for label, values in samples.items():
        p50, p99 = _percentiles(values)
        ratio = "" if label == BARE else f"{p50 / lcel50:.2f}x"
        print(f"| {label} | {p50:,.0f} | {p99:,.0f} | {p50 - floor50:,.0f} | {p99 - floor99:,.0f} | {ratio} |")


def _percentiles(values: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49] * 1e6, cuts[98] * 1e6


def print_counting(results: list[tuple[str, str, dict[str, float]]]) -> None:
    print("## Token counting: relaychain vs raw tiktoken (tokens/s, fastest call)\n")
    print(
        f"| encoding | input | {RAW} | {RAW_ORDINARY} | {COUNT} | {ASYNC} | {CONCURRENT} "
        "| count / encode | async / encode | gathered / encode |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    worst = float("inf")
    for encoding_name, size, rates in results:
        raw = rates[RAW]
        count_ratio, async_ratio, gathered_ratio = rates[COUNT] / raw, rates[ASYNC] / raw, rates[CONCURRENT] / raw
        worst = min(worst, count_ratio, async_ratio, gathered_ratio)
        print(
            f"| {encoding_name} | {size} | {raw:,.0f} | {rates[RAW_ORDINARY]:,.0f} | {rates[COUNT]:,.0f} "
            f"| {rates[ASYNC]:,.0f} | {rates[CONCURRENT]:,.0f} | {count_ratio:.1%} | {async_ratio:.1%} | {gathered_ratio:.1%} |"
        )
    verdict = "meets" if worst >= 0.9 else "misses"
    print(f"\nworst ratio {worst:.1%}: {verdict} the 90 % target")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="Timed calls per variant and input (counting).")
    parser.add_argument("--requests", type=int, default=1000, help="Timed requests per path (overhead).")
    parser.add_argument("--only", choices=("counting", "overhead"), help="Run one part.")
    args = parser.parse_args()

    if args.only != "overhead":
        print_counting(asyncio.run(bench_counting(args.calls)))
    if args.only != "counting":
        print_overhead(asyncio.run(bench_overhead(args.requests)), args.requests)


if __name__ == "__main__":
    main()
