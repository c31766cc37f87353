"""Tokens and money: per-model token counters, context-window trimming, pricing."""

from relaychain.agents.tokens.counter import (
    OFFLOAD_CHARS,
    HuggingFaceCounter,
    TiktokenCounter,
    TokenCounter,
    count_async,
    count_messages_async,
    counter_for,
    off_loop,
)
from relaychain.agents.tokens.encodings import (
    ENCODING_NAMES,
    EncodingUnavailable,
    encoding_for_model,
    load_encoding,
)
from relaychain.agents.tokens.pricing import COST_QUANTUM, price, priced_usage, quantize_cost
from relaychain.agents.tokens.trim import compose_messages, fit_history, split_turns

__all__ = [
    "COST_QUANTUM",
    "ENCODING_NAMES",
    "OFFLOAD_CHARS",
    "EncodingUnavailable",
    "HuggingFaceCounter",
    "TiktokenCounter",
    "TokenCounter",
    "compose_messages",
    "count_async",
    "count_messages_async",
    "counter_for",
    "encoding_for_model",
    "fit_history",
    "load_encoding",
    "off_loop",
    "price",
    "priced_usage",
    "quantize_cost",
    "split_turns",
]
