"""Token counters: each model's own tokenizer behind one small protocol.

OpenAI models count with tiktoken, local transformers models with their own
Hugging Face tokenizer. `counter_for` builds one counter per model per
process; loading a Hugging Face tokenizer from a GGUF file takes seconds.
Once a fast tokenizer is saved (`tokenizer.json`), it is counted through the
`tokenizers` library and jinja2 directly, as transformers does it, without
importing transformers and torch (2 s of every start-up).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import tiktoken

from relaychain.agents.hf_imports import TRANSFORMERS_LOCK
from relaychain.agents.tokens.encodings import load_encoding, private_copy
from relaychain.agents.weights import locate_weights
from relaychain.schemas import ChatMessage
from relaychain.schemas.config import ModelConfig, Provider

__all__ = [
    "OFFLOAD_CHARS",
    "HuggingFaceCounter",
    "TiktokenCounter",
    "TokenCounter",
    "TokenizerFileCounter",
    "count_async",
    "count_messages_async",
    "counter_for",
    "off_loop",
]

TOKENS_PER_MESSAGE = 3
"""Each chat message is wrapped as `<|start|>{role/name}\\n{content}<|end|>\\n` (OpenAI cookbook)."""
TOKENS_PER_NAME = 1
REPLY_PRIMER = 3
"""Every reply is primed with `<|start|>assistant<|message|>`."""

OFFLOAD_CHARS = 8192
"""Inputs longer than this are tokenised in a worker thread so the event loop never stalls."""


@runtime_checkable
class TokenCounter(Protocol):
    """What the agents need of a tokenizer. Implementations are safe to call from several threads."""

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, special-token look-alikes treated as plain text."""
        ...

    def count(self, text: str) -> int: ...

    def decode_bytes(self, ids: Sequence[int]) -> list[bytes]:
        """The bytes of each token; one token may hold part of a UTF-8 character."""
        ...

    def count_messages(self, messages: Sequence[ChatMessage]) -> int:
        """Input tokens a chat request with these messages is billed for, reply primer included."""
        ...


CACHED_TEXT_CHARS = 4096
"""Counts of texts up to this long are remembered: prompts, history turns and roles recur on every request."""
CACHED_TEXTS = 8192


class TiktokenCounter:
    """Counts with a tiktoken encoding, the way OpenAI bills chat requests.

    On the offload thread it uses a private copy of the encoding (see
    `encodings.private_copy`), so neither thread runs tiktoken's slow path.
    A request's texts are counted several times (the prompt alone, then with
    more or less history, then again for the bill), so the counts of short
    texts are kept in an LRU cache: at most CACHED_TEXTS entries of at most
    CACHED_TEXT_CHARS characters each.
    """

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.encoding = encoding
        self._cached_count = lru_cache(maxsize=CACHED_TEXTS)(self._count_uncached)

    def _encoding_here(self) -> tiktoken.Encoding:
        return private_copy(self.encoding) if _on_offload_thread() else self.encoding

    def encode(self, text: str) -> list[int]:
        # encode_ordinary: user text that spells `<|endoftext|>` is text, not a control token.
        return self._encoding_here().encode_ordinary(text)

    def count(self, text: str) -> int:
        if len(text) <= CACHED_TEXT_CHARS:
            return self._cached_count(text)
        return self._count_uncached(text)

    def clear_cache(self) -> None:
        """Forget remembered counts (benches measure tokenising, not the cache)."""
        self._cached_count.cache_clear()

    def _count_uncached(self, text: str) -> int:
        return len(self._encoding_here().encode_ordinary(text))

    def decode_bytes(self, ids: Sequence[int]) -> list[bytes]:
        return self.encoding.decode_tokens_bytes(list(ids))

    def count_messages(self, messages: Sequence[ChatMessage]) -> int:
        count = self.count
        total = REPLY_PRIMER
        for message in messages:
            total += TOKENS_PER_MESSAGE + count(message.role) + count(message.content)
            if message.name:
                total += TOKENS_PER_NAME + count(message.name)
        return total


class HuggingFaceCounter:
    """Counts with a model's own Hugging Face tokenizer; chats through its chat template."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        # transformers mutates the backend's truncation/padding state per call,
        # which the Rust tokenizer refuses to share across threads.
        self._lock = threading.Lock()
        self._byte_decoder = _byte_level_decoder(tokenizer)

    @classmethod
    def from_model(cls, name: str, model: ModelConfig, cache_dir: Path | None = None) -> HuggingFaceCounter:
        """Parsing a GGUF file's vocabulary takes ~10 s; the tokenizer is saved to `cache_dir` once and reloads in well under one."""
        with TRANSFORMERS_LOCK:
            from transformers import AutoTokenizer

            if cache_dir is not None and (cache_dir / "tokenizer_config.json").is_file():
                return cls(AutoTokenizer.from_pretrained(str(cache_dir), local_files_only=True))
            weights = locate_weights(name, model)
            directory, gguf_file = weights.directory, weights.gguf_file
            kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
            if model.trust_remote_code:
                kwargs["trust_remote_code"] = True
            tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, **kwargs)
        if cache_dir is not None and gguf_file:
            staging = cache_dir.with_name(f".{cache_dir.name}.{os.getpid()}")
            tokenizer.save_pretrained(str(staging))
            staging.replace(cache_dir)
        return cls(tokenizer)

    def encode(self, text: str) -> list[int]:
        with self._lock:
            return list(self.tokenizer.encode(text, add_special_tokens=False))

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def decode_bytes(self, ids: Sequence[int]) -> list[bytes]:
        with self._lock:
            pieces = self.tokenizer.convert_ids_to_tokens(list(ids))
            return [self._piece_bytes(i, piece) for i, piece in zip(ids, pieces, strict=True)]

    def _piece_bytes(self, token_id: int, piece: str) -> bytes:
        table = self._byte_decoder
        if table is not None and all(ch in table for ch in piece):
            return bytes(table[ch] for ch in piece)
        text: str = self.tokenizer.decode([token_id])
        return text.encode()

    def count_messages(self, messages: Sequence[ChatMessage]) -> int:
        if not messages:
            # Chat templates refuse an empty conversation; nothing to send costs nothing (a new conversation's
            # history, say).
            return 0
        chat = [{"role": m.role, "content": m.content} for m in messages]
        with self._lock:
            if self.tokenizer.chat_template is None:
                return sum(len(self.tokenizer.encode(m["content"], add_special_tokens=False)) for m in chat)
            rendered = self.tokenizer.apply_chat_template(chat, tokenize=True, add_generation_prompt=True)
        ids = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
        return len(ids)


class TokenizerFileCounter:
    """A saved fast tokenizer counted as `HuggingFaceCounter` counts it, from its files alone.

    transformers' fast tokenizers are `tokenizers` ones underneath, and its chat
    templates are jinja2 rendered in a sandbox with the special tokens in scope:
    the same ids, without importing transformers (and torch with it).
    """

    def __init__(self, tokenizer: Any, chat_template: Any, special_tokens: dict[str, str]) -> None:
        self.tokenizer = tokenizer
        self._template = chat_template
        self._special_tokens = special_tokens
        self._byte_decoder = _byte_level_decoder(tokenizer)

    @classmethod
    def load(cls, directory: Path) -> TokenizerFileCounter | None:
        """The counter for the fast tokenizer saved under `directory`, or None when its chat template needs
        transformers (several named templates)."""
        from tokenizers import Tokenizer

        config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        template_file = directory / "chat_template.jinja"
        source = template_file.read_text(encoding="utf-8") if template_file.is_file() else config.get("chat_template")
        if source is not None and not isinstance(source, str):
            return None  # named templates: left to transformers
        special = {
            key: value["content"] if isinstance(value, dict) else value
            for key, value in config.items()
            if key.endswith("_token") and isinstance(value, str | dict)
        }
        return cls(tokenizer, _compile_chat_template(source) if source else None, special)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def decode_bytes(self, ids: Sequence[int]) -> list[bytes]:
        table = self._byte_decoder
        pieces = []
        for token_id in ids:
            piece = self.tokenizer.id_to_token(token_id) or ""
            if table is not None and all(ch in table for ch in piece):
                pieces.append(bytes(table[ch] for ch in piece))
            else:
                pieces.append(self.tokenizer.decode([token_id]).encode())
        return pieces

    def count_messages(self, messages: Sequence[ChatMessage]) -> int:
        if not messages:
            return 0  # as HuggingFaceCounter: nothing to send costs nothing
        chat = [{"role": m.role, "content": m.content} for m in messages]
        if self._template is None:
            return sum(self.count(m["content"]) for m in chat)
        rendered = self._template.render(messages=chat, add_generation_prompt=True, **self._special_tokens)
        return self.count(rendered)


def _compile_chat_template(source: str) -> Any:
    """A chat template in the environment transformers renders it in (`chat_template_utils`)."""
    from datetime import datetime

    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(
        x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False
    ) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return environment.from_string(source)


_counters: dict[str, TokenCounter] = {}
_counters_lock = threading.Lock()


def counter_for(model: ModelConfig, name: str, cache_dir: Path | None = None) -> TokenCounter:
    """The counter for model `name` (its config key), built once per process.

    `tokenizer: tiktoken:<encoding>` -> TiktokenCounter; `hf` -> the model's
    own tokenizer (transformers models only), cached under `cache_dir/<name>`
    when a cache directory is given.
    """
    counter = _counters.get(name)
    if counter is not None:
        return counter
    with _counters_lock:
        if name not in _counters:
            _counters[name] = _build_counter(model, name, cache_dir)
        return _counters[name]


def _build_counter(model: ModelConfig, name: str, cache_dir: Path | None) -> TokenCounter:
    kind, _, encoding = model.tokenizer.partition(":")
    if kind == "tiktoken" and encoding:
        return TiktokenCounter(load_encoding(encoding))
    if kind == "hf" and model.provider in (Provider.TRANSFORMERS, Provider.LLAMA_CPP):
        saved = cache_dir / name if cache_dir is not None else None
        fast = TokenizerFileCounter.load(saved) if saved is not None and (saved / "tokenizer.json").is_file() else None
        return fast or HuggingFaceCounter.from_model(name, model, saved)
    raise ValueError(
        f"models.{name}.tokenizer {model.tokenizer!r}: use `tiktoken:<encoding>` or `hf` (local models only)"
    )


T = TypeVar("T")


_offload_role = threading.local()


def _mark_offload_thread() -> None:
    _offload_role.active = True


def _on_offload_thread() -> bool:
    return getattr(_offload_role, "active", False)


# One thread, always the same: it owns the private encoding copies it uses
# (see `encodings.private_copy`). Big inputs queue behind each other here;
# workers scale out by process, not by tokeniser threads.
_offload = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relaychain-tokenise", initializer=_mark_offload_thread)


async def off_loop(size: int, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` inline for small inputs, on the tokeniser thread once `size` (chars) passes OFFLOAD_CHARS.

    A thread hop costs more than tokenising a short message, so only big
    inputs pay for it.
    """
    if size > OFFLOAD_CHARS:
        return await asyncio.get_running_loop().run_in_executor(_offload, partial(fn, *args))
    return fn(*args)


async def count_async(counter: TokenCounter, text: str) -> int:
    return await off_loop(len(text), counter.count, text)


async def count_messages_async(counter: TokenCounter, messages: Sequence[ChatMessage]) -> int:
    return await off_loop(sum(len(m.content) for m in messages), counter.count_messages, messages)


def _byte_level_decoder(tokenizer: Any) -> dict[str, int] | None:
    """char -> byte for GPT-2 style byte-level BPE tokenizers, whose token strings encode raw bytes.

    `tokenizer`: a transformers tokenizer or a `tokenizers` one."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    if type(getattr(backend, "decoder", None)).__name__ != "ByteLevel":
        return None
    # GPT-2's table: printable bytes stand for themselves, the others for the code points from 256 up, in order.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    table = {chr(byte): byte for byte in printable}
    table.update({chr(256 + n): byte for n, byte in enumerate(others)})
    return table
