"""The HTTP gateway against the in-process client on the same bus, and time to first streamed token.

One embedded gateway (memory bus, 7 agents, tracing on) with the instant
model from `bench/instant.py`, served by uvicorn on 127.0.0.1:

- requests/s and p50/p99 latency of `POST /v1/requests` (HTTP -> bus ->
  agents -> HTTP), against the same requests submitted through the
  gateway's own `Client` on the same bus (the baseline), in alternating
  rounds; target ratio >= 0.5. The HTTP callers (httpx, `--concurrency` in
  flight) run in a child process, as real callers do: the gateway's process
  pays for serving HTTP, not for being its own client;
- streamed requests one at a time: time to the first `delta` event against
  time to the `answer` event. Here the instant model hands its text over in
  word pieces with `--piece-ms` between them, so a stream has a length.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.instant import InstantModel  # noqa: E402
from relaychain.agents.llm import ChatModel, Completion, CompletionRequest, ModelFactory  # noqa: E402
from relaychain.app import Components  # noqa: E402
from relaychain.gateway import ApiKeys, GatewayHost, create_app  # noqa: E402
from relaychain.gateway.serve import listening_socket  # noqa: E402
from relaychain.schemas import Request  # noqa: E402
from relaychain.schemas.config import ModelConfig, Provider  # noqa: E402
from relaychain.settings import load_settings  # noqa: E402

CALLERS_PER_PROCESS = 8
BODY = {
    "business": "ops_push",
    "input": "Half price on everything",
    "vars": {"campaign": "Double 11", "audience": "students"},
}


class PiecewiseInstantModel(InstantModel):
    """The instant model, handing its text to `on_delta` word by word with a fixed pause."""

    piece_s = 0.0

    async def complete(self, request: CompletionRequest) -> Completion:
        completion = await super().complete(request)
        if request.on_delta is not None:
            for index, word in enumerate(completion.text.split(" ")):
                await asyncio.sleep(self.piece_s)
                await request.on_delta(word if index == 0 else " " + word)
        return completion


def factories() -> dict[Provider, ModelFactory]:
    def factory(name: str, config: ModelConfig) -> ChatModel:
        return PiecewiseInstantModel(name, config)

    return {provider: factory for provider in Provider}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def drive(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    next_index = 0

    async def lane() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            start = time.perf_counter()
            await one(index)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return count / (time.perf_counter() - start), latencies


async def http_load(url: str, count: int, concurrency: int) -> None:
    """The child process: `count` POSTs, `concurrency` in flight; prints its work's start, end and latencies."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:

        async def over_http(index: int) -> None:
            response = await http.post("/v1/requests", json=BODY)
            assert response.status_code == 200 and response.json()["type"] == "response", response.text

        await over_http(-1)  # connected before the clock starts
        started = time.time()
        _, latencies = await drive(count, concurrency, over_http)
    print(json.dumps({"started": started, "ended": time.time(), "latencies": latencies}))


async def http_round(url: str, count: int, concurrency: int) -> tuple[float, list[float]]:
    """`concurrency` in flight from several child processes: one httpx pool slows down past ~8 connections."""
    children = max(1, concurrency // CALLERS_PER_PROCESS)
    results = await asyncio.gather(*(_child(url, count // children, concurrency // children) for _ in range(children)))
    # From the first child's first request to the last child's last answer: start-up is not counted.
    elapsed = max(r["ended"] for r in results) - min(r["started"] for r in results)
    latencies = [latency for r in results for latency in r["latencies"]]
    return len(latencies) / elapsed, latencies


async def _child(url: str, count: int, concurrency: int) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--load",
        url,
        "--requests",
        str(count),
        "--concurrency",
        str(concurrency),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"HTTP load process failed ({child.returncode})")
    return json.loads(out)


def combine(runs: list[tuple[float, list[float]]]) -> tuple[float, list[float]]:
    """Requests/s over all rounds (total requests over total time) and every latency."""
    count = sum(len(latencies) for _, latencies in runs)
    seconds = sum(len(latencies) / rate for rate, latencies in runs)
    return count / seconds, [latency for _, latencies in runs for latency in latencies]


def row(name: str, rate: float, latencies: list[float], baseline: float) -> str:
    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    return f"| {name} | {rate:,.0f} | {p50:.1f} | {p99:.1f} | {rate / baseline:.2f}x |"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4, help="Alternating rounds of the two paths.")
    parser.add_argument("--streams", type=int, default=50, help="Streamed requests, one at a time.")
    parser.add_argument("--piece-ms", type=float, default=10.0, help="Pause between streamed word pieces.")
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        await http_load(args.load, args.requests, args.concurrency)
        return

    with tempfile.TemporaryDirectory(prefix="relaychain-bench-") as tmp:
        settings = load_settings(
            data_dir=Path(tmp), observability={"exporters": ["jsonl"], "jsonl_path": str(Path(tmp) / "traces.jsonl")}
        )
        host = GatewayHost(settings, keys=ApiKeys({}), components=Components(settings, model_factories=factories()))
        async with host:
            import uvicorn

            sock = listening_socket("127.0.0.1", 0)
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            server = uvicorn.Server(
                uvicorn.Config(create_app(host), log_level="warning", lifespan="off", timeout_keep_alive=60)
            )
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            assert host.hub is not None
            client = host.hub.client
            limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
            async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
                while not server.started:
                    await asyncio.sleep(0.01)

                async def in_process(index: int) -> None:
                    answer = await (await client.submit(Request.model_validate(BODY)))
                    assert answer.type == "response", answer

                await drive(args.concurrency * 2, args.concurrency, in_process)  # warm-up: caches, templates
                await http_round(url, args.concurrency * 2, args.concurrency)
                # Alternating rounds (ABBA): whatever slows a long-running process down later weighs on both.
                runs: dict[str, list[tuple[float, list[float]]]] = {"base": [], "http": []}
                share = max(1, args.requests // args.rounds)
                for index in range(args.rounds):
                    order = ("base", "http") if index % 2 == 0 else ("http", "base")
                    for name in order:
                        if name == "base":
                            runs[name].append(await drive(share, args.concurrency, in_process))
                        else:
                            runs[name].append(await http_round(url, share, args.concurrency))
                base_rate, base_latencies = combine(runs["base"])
                http_rate, http_latencies = combine(runs["http"])

                PiecewiseInstantModel.piece_s = args.piece_ms / 1000
                first_token: list[float] = []
                full: list[float] = []
                for _ in range(args.streams):
                    start = time.perf_counter()
                    first: float | None = None
                    async with http.stream("POST", "/v1/requests", json={**BODY, "stream": True}) as response:
                        async for line in response.aiter_lines():
                            if line == "event: delta" and first is None:
                                first = time.perf_counter() - start
                            elif line == "event: answer":
                                full.append(time.perf_counter() - start)
                    assert first is not None, "no delta before the answer"
                    first_token.append(first)
            server.should_exit = True
            await serving

    print(f"## Gateway: {args.requests:,} requests, {args.concurrency} in flight, memory bus, 7 agents, tracing on\n")
    print("| path | requests/s | p50 ms | p99 ms | vs in-process |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(row("in-process Client on the same bus (baseline)", base_rate, base_latencies, base_rate))
    print(row("HTTP: POST /v1/requests -> bus -> agents -> HTTP", http_rate, http_latencies, base_rate))
    ratio = http_rate / base_rate
    print(f"\nHTTP / in-process = {ratio:.2f}x: {'meets' if ratio >= 0.5 else 'misses'} the 0.5x target")
    ttft, total = statistics.median(first_token) * 1000, statistics.median(full) * 1000
    print(
        f"\nStreaming ({args.streams} requests, {args.piece_ms:g} ms between pieces): first delta after {ttft:.1f} ms "
        f"(p50), full answer after {total:.1f} ms (p50): first token at {ttft / total:.0%} of the answer time"
    )


if __name__ == "__main__":
    asyncio.run(main())
