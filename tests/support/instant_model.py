"""The "instant model": every business answered by an `OpenAITestServer` over the real `openai` SDK.

`write_instant_config(tmp_path, server.base_url, businesses)` copies the
shipped config (templates, schemas, word lists beside it) and points each
kept business at a model of its own, `instant-<business>`, served by the
test server; `script_instant_replies(server, businesses)` scripts each of
those models with a reply that is valid for the business's output schema
(car_blog's chain steps answer prose, which the formatter assembles).
Processes that read the config need `INSTANT_API_KEY_ENV` set to anything.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from relaychain.settings import DEFAULT_CONFIG
from tests.support.openai_server import OpenAITestServer, Reply

__all__ = [
    "CAR_SPECS",
    "INSTANT_API_KEY_ENV",
    "INSTANT_REPLIES",
    "instant_model",
    "script_instant_replies",
    "write_instant_config",
]

INSTANT_API_KEY_ENV = "RELAYCHAIN_INSTANT_API_KEY"
CAR_SPECS = Path(__file__).resolve().parents[2] / "examples" / "cars" / "specs"

INSTANT_REPLIES: dict[str, str] = {
    "ops_push": json.dumps({"title": "Spring sale", "body": "Everything 20% off this weekend."}),
    "personalized_push": json.dumps(
        {"title": "New for you", "body": "Fresh hiking boots just arrived.", "user_segment": "outdoors"}
    ),
    "weibo_regional": json.dumps({"region": "Chengdu", "post": "Hotpot season is here.", "hashtags": ["chengdu"]}),
    "product_review": json.dumps({"reply": "Thank you for your kind review!", "sentiment": "positive"}),
    "news_comment": json.dumps({"comment": "A sensible decision at last.", "stance": "support"}),
    # A chain step writes prose: the formatter assembles {title, opening, middle, ending, specs_cited}.
    "car_blog": "Quiet power for long trips. The car pairs a large battery with a calm, roomy cabin.",
}


def instant_model(business: str) -> str:
    return f"instant-{business}"


def write_instant_config(directory: Path, base_url: str, businesses: Iterable[str]) -> Path:
    """A config file under `directory/config` serving only `businesses`, each from its instant model."""
    kept = list(businesses)
    target = directory / "config"
    shutil.copytree(DEFAULT_CONFIG.parent, target)
    raw: dict[str, Any] = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    raw["models"] = {
        instant_model(name): {
            "provider": "openai-compatible",
            "base_url": base_url,
            "api_key_env": INSTANT_API_KEY_ENV,
            "tokenizer": "tiktoken:cl100k_base",
            "context_window": 16385,
            "max_output_tokens": 512,
            "price": {"input_per_million": "0.50", "output_per_million": "1.50", "currency": "USD"},
            "timeout_s": 30,
        }
        for name in kept
    }
    raw["businesses"] = {name: raw["businesses"][name] for name in kept}
    for name, business in raw["businesses"].items():
        business["default_model"] = instant_model(name)
        business["allowed_models"] = [instant_model(name)]
        business["templates"] = {"default": business["templates"]["default"]}
        retrieval = business.get("retrieval")
        if retrieval and retrieval.get("sources"):
            retrieval["sources"] = str(CAR_SPECS)
    path = target / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def script_instant_replies(server: OpenAITestServer, businesses: Iterable[str], *, delay_s: float = 0.0) -> None:
    for name in businesses:
        server.script(
            instant_model(name), Reply(text=INSTANT_REPLIES[name], input_tokens=40, output_tokens=20, delay_s=delay_s)
        )
