"""How often SmolLM2's answer needs a re-ask: plain generation vs constrained decoding, for every shipped business.

    python bench/formatting.py                 # 2 inputs per business (--inputs 3 for all), both paths
    python bench/formatting.py --quick         # 1 input per business
    python bench/formatting.py --data-dir DIR  # where the converted weights are cached (RELAYCHAIN_DATA_DIR by default)

The model is the shipped `smollm2-135m` entry through
the configured engine (as the model pool builds it), with one torch thread
by default (`--threads`). Each prompt is what the router renders for (business, smollm2-135m) on the
shipped config, generated greedily with the model's `max_output_tokens`, once
without a schema (plain) and once with the business's JSON Schema compiled
by xgrammar (constrained). The answer then goes through the formatter's own
extraction and validation (`relaychain.agents.formatting`): strict JSON that validates
is first-try valid; JSON that validates only after `json-repair` is
repaired; anything else — no JSON, truncated (including a generation cut
by the token limit), unparseable, or a schema violation — needs a re-ask.

car_blog is a chain of prose steps (the formatter assembles its object from
them, and its config turns constrained decoding off); here it is asked for
the whole object in one generation with the prompt the formatter uses to
re-ask a chain, so both paths have a JSON answer to judge.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from relaychain.agents.formatting import (
    ExtractionError,
    OutputSchema,
    SchemaRegistry,
    SchemaViolation,
    extract_json,
)
from relaychain.agents.llm import CompletionRequest, ModelRequestRejected, default_factories
from relaychain.agents.prompts import PromptLibrary
from relaychain.agents.router import template_scope
from relaychain.schemas import ChatMessage, Request
from relaychain.settings import Settings, load_settings

MODEL = "smollm2-135m"
PATHS = ("plain", "constrained")
OUTCOMES = ("valid", "repaired", "re-ask")

INPUTS: dict[str, list[tuple[str, dict[str, str]]]] = {
    "ops_push": [
        ("Everything is half price until midnight", {"campaign": "Double 11", "audience": "students"}),
        ("Free shipping on every order this weekend", {"campaign": "Spring Sale", "audience": "new customers"}),
        ("Members get early access to the new phone", {"campaign": "Launch Day", "audience": "loyalty members"}),
    ],
    "personalized_push": [
        ("The trail shoes you looked at are back in stock", {"user_name": "Ada", "interests": "hiking, trail running"}),
        ("A new cookbook from your favourite chef is out", {"user_name": "Li Wei", "interests": "Sichuan cooking"}),
        ("Tickets for the jazz festival go on sale today", {"user_name": "Sam", "interests": "jazz, live music"}),
    ],
    "weibo_regional": [
        ("Hotpot season opens this weekend", {"region": "Chengdu"}),
        ("The lantern festival moves to the riverside", {"region": "Xi'an"}),
        ("New metro line 12 opens on Monday", {"region": "Shenzhen"}),
    ],
    "product_review": [
        ("The kettle boils fast and looks great on the counter.", {"product": "Aurora electric kettle", "rating": "5"}),
        ("The strap broke after two weeks.", {"product": "Trailmate backpack", "rating": "2"}),
        ("It works, but the manual is confusing.", {"product": "Nimbus robot vacuum", "rating": "3"}),
    ],
    "news_comment": [
        ("The city opened the new bridge to cyclists today.", {"headline": "Bridge opens to bikes"}),
        ("The council voted to close the night market.", {"headline": "Night market to close"}),
        ("Scientists found water ice near the moon's south pole.", {"headline": "Ice found on the moon"}),
    ],
    "car_blog": [
        ("A family of four wants a long-range electric SUV for weekend trips", {"car": "Halvorsen Nordkap E7"}),
        ("A city commuter wants something small and cheap to park", {"car": "Kestrel Brio Urban"}),
        ("An enthusiast wants a fast sedan for mountain roads", {"car": "Ostrava Vektor R"}),
    ],
}


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    output_tokens: int = 0

    @property
    def calls(self) -> int:
        return sum(self.outcomes.values())


def judge(text: str, finish_reason: str, schema: OutputSchema) -> tuple[str, str | None]:
    """The formatter's verdict on one answer: (outcome, reason a re-ask is needed)."""
    try:
        extracted = extract_json(text, finish_reason=finish_reason)
        schema.validate(extracted.value)
    except ExtractionError as exc:
        return "re-ask", exc.reason
    except SchemaViolation:
        return "re-ask", "schema"
    return ("repaired" if extracted.repaired else "valid"), None


def messages_for(
    settings: Settings, prompts: PromptLibrary, schema: OutputSchema, business: str, request: Request
) -> list[ChatMessage]:
    if settings.app.businesses[business].chain:
        instruction = (
            f"Write a JSON object matching this JSON Schema:\n{json.dumps(schema.json_schema, ensure_ascii=False)}"
        )
        return [
            ChatMessage(role="user", content=f"{instruction}\nThe car: {request.vars['car']}. Brief: {request.input}")
        ]
    return list(prompts.render(business, MODEL, template_scope(request, MODEL)))


async def run(settings: Settings, per_business: int, threads: int, verbose: bool) -> dict[tuple[str, str], Tally]:
    prompts = PromptLibrary(settings.app, settings.config_dir)
    registry = SchemaRegistry(settings.app, settings.config_dir)
    config = settings.app.models[MODEL]
    factories = default_factories(settings.data_dir, on_progress=lambda message: print(f"  {message}", file=sys.stderr))
    model = factories[config.provider](MODEL, config.model_copy(update={"threads": threads}))
    max_tokens = config.max_output_tokens
    started = time.perf_counter()
    await model.load()
    print(f"SmolLM2 loaded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    tallies: dict[tuple[str, str], Tally] = {}
    try:
        for business, inputs in INPUTS.items():
            schema = registry[settings.app.businesses[business].output_schema]
            for text, variables in inputs[:per_business]:
                request = Request(business=business, input=text, vars=variables)
                messages = messages_for(settings, prompts, schema, business, request)
                for path in PATHS:
                    began = time.perf_counter()
                    tally = tallies.setdefault((business, path), Tally())
                    try:
                        completion = await model.complete(
                            CompletionRequest(
                                messages=messages,
                                max_tokens=max_tokens,
                                json_schema=schema.json_schema if path == "constrained" else None,
                            )
                        )
                    except ModelRequestRejected:
                        # llama.cpp cannot compile every schema (car_blog's long strings): the engine refuses.
                        tally.outcomes["re-ask"] += 1
                        tally.reasons["grammar refused"] += 1
                        continue
                    tally.seconds += time.perf_counter() - began
                    tally.output_tokens += completion.output_tokens
                    outcome, reason = judge(completion.text, completion.finish_reason, schema)
                    tally.outcomes[outcome] += 1
                    if reason:
                        tally.reasons[reason] += 1
                    if verbose:
                        print(
                            f"--- {business} / {path}: {outcome} {reason or ''}\n{completion.text}\n", file=sys.stderr
                        )
    finally:
        await model.aclose()
    return tallies


def print_table(tallies: dict[tuple[str, str], Tally], per_business: int) -> None:
    print(
        f"## SmolLM2-135M: formatter verdicts, plain vs constrained decoding ({per_business} input(s) per business)\n"
    )
    print("| business | path | first-try valid | repaired | needs re-ask | re-ask reasons | output tokens | s/answer |")
    print("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |")
    totals = {path: Tally() for path in PATHS}
    for (business, path), tally in tallies.items():
        total = totals[path]
        total.outcomes.update(tally.outcomes)
        total.reasons.update(tally.reasons)
        total.seconds += tally.seconds
        total.output_tokens += tally.output_tokens
        print(_row(business, path, tally))
    for path in PATHS:
        print(_row("**all**", f"**{path}**", totals[path]))
    plain, constrained = (totals[p] for p in PATHS)
    print(
        f"\nre-ask rate: plain {plain.outcomes['re-ask'] / plain.calls:.0%}, "
        f"constrained {constrained.outcomes['re-ask'] / constrained.calls:.0%}"
    )


def _row(business: str, path: str, tally: Tally) -> str:
    calls = tally.calls
    cells = " | ".join(f"{tally.outcomes[o]}/{calls}" for o in OUTCOMES)
    reasons = ", ".join(f"{reason} {count}" for reason, count in tally.reasons.most_common()) or "-"
    return f"| {business} | {path} | {cells} | {reasons} | {tally.output_tokens / calls:.0f} | {tally.seconds / calls:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="One input per business.")
    parser.add_argument("--inputs", type=int, default=2, help="Inputs per business (at most 3).")
    parser.add_argument("--data-dir", type=Path, help="Where SmolLM2's converted weights are cached.")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads; one avoids oversubscribing cores shared with other work."
    )
    parser.add_argument("--verbose", action="store_true", help="Print every answer and its verdict to stderr.")
    args = parser.parse_args()
    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    settings = load_settings(**overrides)
    per_business = 1 if args.quick else max(1, min(args.inputs, 3))
    tallies = asyncio.run(run(settings, per_business, args.threads, args.verbose))
    print_table(tallies, per_business)


if __name__ == "__main__":
    main()
